//! Cross-encoder rerankers (`BertForSequenceClassification`: ms-marco-MiniLM-L-6-v2, bge-reranker
//! base models on BERT): each (query, document) pair runs through the BERT encoder as one
//! sequence `[CLS] query [SEP] document [SEP]` (token types 0 / 1), then the classification head
//! on `[CLS]`: `logits = classifier(tanh(pooler(h_cls)))`. [`CrossEncoder::rerank`] returns the
//! first logit per document (the relevance score; sentence-transformers' `CrossEncoder.predict`
//! applies a sigmoid to single-label models, which keeps the order: [`sigmoid`] gives those
//! numbers).
//!
//! ```ignore
//! let ce = CrossEncoder::load(&gpu, &FetchSource::new("/models/ms-marco-MiniLM-L-6-v2/")).await?;
//! let scores = ce.rerank(&gpu, "how many people live in Berlin?", &["Berlin has 3.5M people", "..."]).await?;
//! ```

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::load::{ByteSource, LoadOptions, Progress};
use crate::models::bert::{matrix, take, vector, BertModel};
use crate::ops::elementwise::{self, Op};
use crate::ops::linear::{self, Epilogue};
use crate::ops::pooling::{self, Pooling};

/// A loaded cross-encoder.
pub struct CrossEncoder {
    bert: BertModel,
    pooler_w: GpuTensor,
    pooler_b: GpuTensor,
    classifier_w: GpuTensor,
    classifier_b: GpuTensor,
    labels: usize,
}

/// `1 / (1 + e^-x)`: sentence-transformers' score for single-label cross-encoders.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CrossEncoder {
    /// Load config, tokenizer and weights from a model directory.
    pub async fn load<S: ByteSource>(gpu: &Gpu, source: &S) -> Result<Self> {
        Self::load_with(gpu, source, &LoadOptions::default(), &mut |_| {}).await
    }

    /// Load with explicit options and a progress callback.
    pub async fn load_with<S: ByteSource>(
        gpu: &Gpu,
        source: &S,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Self> {
        let (bert, mut w) = BertModel::load_parts(gpu, source, opts, progress).await?;
        let h = bert.dim();
        let p = if w.contains("bert.pooler.dense.weight") {
            "bert."
        } else {
            ""
        };
        let pooler_w = matrix(&mut w, &format!("{p}pooler.dense.weight"), h, h)?;
        let pooler_b = vector(gpu, &mut w, &format!("{p}pooler.dense.bias"), h).await?;
        let cw = take(&mut w, "classifier.weight")?;
        let labels = match *cw.shape() {
            [n, k] if k == h && n > 0 => n,
            _ => {
                return Err(Error::BadModelFile {
                    file: source.locate(crate::load::SAFETENSORS_FILE),
                    detail: format!("classifier.weight is {:?}, expected [labels, {h}]", cw.shape()),
                })
            }
        };
        let classifier_b = vector(gpu, &mut w, "classifier.bias", labels).await?;
        Ok(CrossEncoder {
            bert,
            pooler_w,
            pooler_b,
            classifier_w: cw,
            classifier_b,
            labels,
        })
    }

    /// The encoder (its tokenizer, config).
    pub fn encoder(&self) -> &BertModel {
        &self.bert
    }

    /// Number of output logits per pair (1 for relevance rerankers).
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// Token ids and types of one pair, the document truncated so the pair fits the model.
    fn pair(&self, query: &str, doc: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let (mut ids, mut types) = self.bert.tokenizer().encode_pair(query, doc)?;
        let max = self.bert.max_tokens();
        if ids.len() > max {
            // Drop document tokens before the final [SEP] (type 1, not the last token).
            let first_doc = types.iter().position(|&t| t == 1).unwrap_or(ids.len());
            let excess = ids.len() - max;
            let end = ids.len() - 1;
            if end < first_doc + 1 + excess {
                return Err(Error::Shape {
                    op: "CrossEncoder::rerank",
                    detail: format!("the query alone takes {first_doc} of the model's {max} tokens"),
                });
            }
            ids.drain(end - excess..end);
            types.drain(end - excess..end);
        }
        Ok((ids, types))
    }

    /// All logits of each (query, doc) pair, `[docs][labels]`, as one padded batch.
    pub async fn logits(&self, gpu: &Gpu, query: &str, docs: &[&str]) -> Result<Vec<Vec<f32>>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let (seqs, types): (Vec<_>, Vec<_>) = docs
            .iter()
            .map(|d| self.pair(query, d))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let (b, h) = (docs.len(), self.bert.dim());
        let z = |name: &str, shape: &[usize]| GpuTensor::zeros(gpu, name, shape, DType::F32);
        let (cls, pooled, logits) = (
            z("ce.cls", &[b, h])?,
            z("ce.pooled", &[b, h])?,
            z("ce.logits", &[b, self.labels])?,
        );
        let lens: Vec<u32> = seqs.iter().map(|s| s.len() as u32).collect();
        let lens = GpuTensor::from_u32(gpu, "ce.lens", &[b], &lens)?;
        let mut batch = gpu.batch();
        let enc = self.bert.record_typed(gpu, &mut batch, &seqs, Some(&types))?;
        pooling::record(gpu, &mut batch, &enc.hidden, &lens, &cls, Pooling::Cls, false)?;
        linear::record(
            gpu,
            &mut batch,
            &cls,
            &self.pooler_w,
            &pooled,
            &Epilogue::bias(&self.pooler_b),
        )?;
        elementwise::record_inplace(gpu, &mut batch, Op::Tanh, &pooled)?;
        linear::record(
            gpu,
            &mut batch,
            &pooled,
            &self.classifier_w,
            &logits,
            &Epilogue::bias(&self.classifier_b),
        )?;
        gpu.submit(batch)?;
        let flat = logits.to_f32_vec(gpu).await?;
        drop(enc);
        Ok(flat.chunks_exact(self.labels).map(<[f32]>::to_vec).collect())
    }

    /// Relevance score of each document for `query` (the first logit; higher is more relevant),
    /// in the documents' order.
    pub async fn rerank(&self, gpu: &Gpu, query: &str, docs: &[&str]) -> Result<Vec<f32>> {
        Ok(self
            .logits(gpu, query, docs)
            .await?
            .into_iter()
            .map(|l| l.first().copied().unwrap_or(f32::NAN))
            .collect())
    }
}
