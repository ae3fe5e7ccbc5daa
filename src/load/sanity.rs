//! Config values that make no sense are refused at load, with the field named, not found at
//! the first forward pass (NaN logits, a kernel reading past a buffer) or as a panic (a
//! `Vec::with_capacity` of a billion layers).

use crate::error::{Error, Result};
use crate::load::config::{BertConfig, DecoderConfig};

/// Layers a model may have (the largest open models have ~130).
pub const MAX_LAYERS: usize = 1024;
/// Largest hidden / intermediate / head size accepted.
pub const MAX_WIDTH: usize = 1 << 20;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest attention head count accepted.
pub const MAX_HEADS: usize = 4096;

fn bad(file: &str, detail: String) -> Error {
    Error::BadModelFile {
        file: file.to_string(),
        detail,
    }
}

fn size(file: &str, field: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 || v > max {
        return Err(bad(file, format!("{field} {v} is not in 1..={max}")));
    }
    Ok(())
}

fn positive(file: &str, field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(bad(file, format!("{field} {v} must be a finite number > 0")));
    }
    Ok(())
}

/// Check a decoder's hyper-parameters (config.json or a GGUF header).
pub fn check_decoder(file: &str, c: &DecoderConfig) -> Result<()> {
    size(file, "num_hidden_layers", c.num_hidden_layers, MAX_LAYERS)?;
    size(file, "hidden_size", c.hidden_size, MAX_WIDTH)?;
    size(file, "intermediate_size", c.intermediate_size, MAX_WIDTH)?;
    size(file, "head_dim", c.head_dim, MAX_WIDTH)?;
    size(file, "vocab_size", c.vocab_size, MAX_VOCAB)?;
    size(file, "num_attention_heads", c.num_attention_heads, MAX_HEADS)?;
    size(file, "num_key_value_heads", c.num_key_value_heads, MAX_HEADS)?;
    size(file, "max_position_embeddings", c.max_position_embeddings, usize::MAX)?;
    positive(file, "rms_norm_eps", c.rms_norm_eps)?;
    positive(file, "rope_theta", c.rope_theta)?;
    Ok(())
}

/// Check a BERT encoder's hyper-parameters.
pub fn check_bert(file: &str, c: &BertConfig) -> Result<()> {
    size(file, "num_hidden_layers", c.num_hidden_layers, MAX_LAYERS)?;
    size(file, "hidden_size", c.hidden_size, MAX_WIDTH)?;
    size(file, "intermediate_size", c.intermediate_size, MAX_WIDTH)?;
    size(file, "vocab_size", c.vocab_size, MAX_VOCAB)?;
    size(file, "num_attention_heads", c.num_attention_heads, MAX_HEADS)?;
    size(file, "max_position_embeddings", c.max_position_embeddings, usize::MAX)?;
    positive(file, "layer_norm_eps", c.layer_norm_eps)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::load::ModelConfig;

    fn decoder(extra: &str) -> String {
        format!(
            r#"{{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2{extra}}}"#
        )
    }

    #[test]
    fn nonsense_decoder_configs_are_refused_naming_the_field() {
        assert!(ModelConfig::parse("config.json", decoder("").as_bytes()).is_ok());
        for (extra, field) in [
            (r#","rms_norm_eps":0"#, "rms_norm_eps"),
            (r#","rms_norm_eps":-1e-6"#, "rms_norm_eps"),
            (r#","rope_theta":0"#, "rope_theta"),
            (r#","rope_theta":-10000"#, "rope_theta"),
            (r#","head_dim":0"#, "head_dim"),
            (r#","intermediate_size":0"#, "intermediate_size"),
            (r#","num_hidden_layers":4000000000"#, "num_hidden_layers"),
            (r#","max_position_embeddings":0"#, "max_position_embeddings"),
        ] {
            let e = ModelConfig::parse("config.json", decoder(extra).as_bytes()).unwrap_err();
            assert!(e.to_string().contains(field), "{extra}: {e}");
            assert_eq!(e.code(), "BAD_MODEL_FILE");
        }
    }

    #[test]
    fn nonsense_bert_configs_are_refused_naming_the_field() {
        let json = |extra: &str| {
            format!(
                r#"{{"model_type":"bert","vocab_size":100,"hidden_size":32,"num_hidden_layers":1,
                "num_attention_heads":4,"intermediate_size":64{extra}}}"#
            )
        };
        assert!(ModelConfig::parse("config.json", json("").as_bytes()).is_ok());
        for (extra, field) in [
            (r#","layer_norm_eps":0"#, "layer_norm_eps"),
            (r#","num_hidden_layers":2000000000"#, "num_hidden_layers"),
            (r#","intermediate_size":0"#, "intermediate_size"),
        ] {
            let e = ModelConfig::parse("config.json", json(extra).as_bytes()).unwrap_err();
            assert!(e.to_string().contains(field), "{extra}: {e}");
        }
    }
}
