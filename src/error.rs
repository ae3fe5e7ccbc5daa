//! One error type for the whole crate: every fallible path returns
//! `Result<T, Error>`, and every error says which kernel, tensor, file or limit it is about.

use thiserror::Error;

/// Everything that can go wrong, with enough context to act on it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// No WebGPU / Vulkan / Metal / DX12 adapter was offered.
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),

    /// The adapter refused the device we asked for (features or limits).
    #[error("requesting the GPU device failed: {0}")]
    RequestDevice(String),

    /// A request exceeds a limit the adapter reported.
    #[error("{context}: needs {needed} but the device's {limit} is {available}")]
    Limit {
        /// What was being created or dispatched (tensor name, kernel name).
        context: String,
        /// The WebGPU limit's name, e.g. `maxStorageBufferBindingSize`.
        limit: &'static str,
        /// What was asked for.
        needed: u64,
        /// What the device allows.
        available: u64,
    },

    /// Tensor shapes or sizes that an op cannot accept.
    #[error("{op}: bad shape: {detail}")]
    Shape {
        /// The op that rejected its inputs.
        op: &'static str,
        /// What is wrong, naming the tensors.
        detail: String,
    },

    /// A value an op or model call cannot use that is not a tensor shape: a parameter out of
    /// range (a RoPE theta), a token id outside the table, an empty token list, an input the op
    /// does not take, a call made before the one it needs.
    #[error("{op}: {detail}")]
    BadInput {
        /// The op or call that refused it.
        op: &'static str,
        /// What is wrong, naming the value.
        detail: String,
    },

    /// A tensor written by a dispatch shares its buffer with another binding of the same dispatch
    /// (WebGPU forbids a writable binding that aliases any other): the op cannot run in place
    /// this way; pass a separate output.
    #[error(
        "{op}: '{written}' is written and '{other}' is bound too, but they share one buffer (not supported in place)"
    )]
    Aliased {
        /// The op that rejected its bindings.
        op: &'static str,
        /// The tensor the dispatch writes.
        written: String,
        /// The other tensor bound to the same buffer.
        other: String,
    },

    /// An op got a tensor of a dtype it has no kernel for.
    #[error("{op}: tensor '{tensor}' has dtype {got}, expected {expected}")]
    DType {
        /// The op.
        op: &'static str,
        /// The tensor's name.
        tensor: String,
        /// Its dtype.
        got: String,
        /// What the op accepts.
        expected: String,
    },

    /// Host data that does not match the tensor it should fill.
    #[error("tensor '{tensor}': {detail}")]
    Data {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        detail: String,
    },

    /// A validation, out-of-memory or internal error reported by the GPU (wgpu / the browser).
    #[error("GPU error{}: {message}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Gpu {
        /// What we were doing when it was reported.
        context: Option<String>,
        /// The driver's / wgpu's message, which names the labelled kernel or buffer.
        message: String,
    },

    /// The device rejected a kernel variant's shader module or compute pipeline at creation
    /// (WGSL the compiler refuses, a limit the variant exceeds). Natively it is returned by the
    /// pipeline's creation; in the browser, where the verdict arrives asynchronously, by the next
    /// check (`submit` / `sync` / a read) and by every later request for that variant.
    #[error("kernel '{kernel}' variant {variant} was rejected by the GPU: {message}")]
    Pipeline {
        /// The kernel family.
        kernel: &'static str,
        /// Entry point, reduction path and prelude constants.
        variant: String,
        /// The compiler's / wgpu's message.
        message: String,
    },

    /// Mapping a buffer for reading failed.
    #[error("reading back '{what}' failed: {message}")]
    Readback {
        /// Which buffer or tensor.
        what: String,
        /// Why.
        message: String,
    },

    /// The device was lost (driver reset, GPU process crash, `destroy()`); create a new engine.
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    /// A kernel variant was requested that this device cannot run.
    #[error("kernel '{kernel}': variant {variant} is not available on this device ({why})")]
    Unsupported {
        /// The kernel.
        kernel: &'static str,
        /// The variant asked for.
        variant: String,
        /// The missing feature or limit.
        why: String,
    },

    /// Something the loaded model cannot do (a property of the model, not of the device), e.g.
    /// constrained decoding with a tokenizer whose bytes cannot be recovered.
    #[error("{what} is not supported for this model: {why}")]
    UnsupportedByModel {
        /// The feature.
        what: &'static str,
        /// What about the model prevents it.
        why: String,
    },

    /// A KV cache has no room for the tokens being appended.
    #[error("KV cache '{cache}': appending {adding} tokens to {len} exceeds its capacity of {max} tokens")]
    ContextFull {
        /// The cache's name.
        cache: String,
        /// Tokens it holds.
        len: usize,
        /// Tokens being appended.
        adding: usize,
        /// Its capacity (max context).
        max: usize,
    },

    /// A model file (safetensors, config, index, tokenizer) that cannot be used as it is.
    #[error("model file '{file}': {detail}")]
    BadModelFile {
        /// The file (path or URL).
        file: String,
        /// What is wrong, naming the tensor or field.
        detail: String,
    },

    /// A model whose configuration asks for something the forward pass does not implement
    /// (a RoPE scaling type, an activation, logit soft-capping, an architecture...): refused
    /// at load instead of run with different math.
    #[error("model file '{file}': {field} = {value} is not supported ({supported})")]
    UnsupportedConfig {
        /// The file (config.json, a .gguf).
        file: String,
        /// The field, e.g. `rope_scaling.rope_type` or `hidden_act`.
        field: String,
        /// Its value as written.
        value: String,
        /// What is supported instead.
        supported: String,
    },

    /// A model file that does not exist (HTTP 404, no such file).
    #[error("model file '{file}' not found")]
    NotFound {
        /// The file (path or URL).
        file: String,
    },

    /// Fetching or reading a file failed (network, HTTP status, I/O).
    #[error("reading '{url}' failed: {detail}")]
    Network {
        /// The URL or path.
        url: String,
        /// What failed.
        detail: String,
    },

    /// The caller cancelled a long operation (loading, generation); what it had allocated is freed.
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// A model that cannot fit the device (or the caller's budget), found before any weight was
    /// downloaded: `detail` names the tensor or the part (weights, KV cache, activations).
    #[error("model too large: needs {needed} bytes but the {limit} is {available} bytes ({detail})")]
    ModelTooLarge {
        /// Bytes needed (of the whole model, or of the one buffer named in `detail`).
        needed: u64,
        /// Which limit: `maxBufferSize`, `maxStorageBufferBindingSize` or `memory budget`.
        limit: &'static str,
        /// What the limit allows.
        available: u64,
        /// The tensor or the breakdown (weights + KV cache + activations).
        detail: String,
    },

    /// Tokenizing, decoding or rendering a chat template failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An internal invariant failed; a bug in kjarni-web, reported instead of panicking.
    #[error("internal error: {0}")]
    Internal(String),

    /// A caller's argument (a request field, an option) is out of range or malformed.
    #[error("{field} {detail}")]
    InvalidArgument {
        /// The field, as the caller named it (`messages[0].role`, `temperature`).
        field: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable, machine-readable code for this error: what the JavaScript API puts in
    /// `error.code`. Every variant is mapped here, in one place (the match is exhaustive, so a new
    /// variant does not compile until it has a code). Codes never change once published.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoAdapter(_) => "WEBGPU_UNAVAILABLE",
            Error::RequestDevice(_) => "DEVICE_REQUEST_FAILED",
            Error::Limit { .. } => "LIMIT_EXCEEDED",
            Error::Shape { .. } => "SHAPE",
            Error::BadInput { .. } => "BAD_INPUT",
            Error::Aliased { .. } => "ALIASED",
            Error::DType { .. } => "DTYPE",
            Error::Data { .. } => "BAD_DATA",
            Error::Gpu { .. } => "GPU_ERROR",
            Error::Pipeline { .. } => "GPU_ERROR",
            Error::Readback { .. } => "GPU_ERROR",
            Error::DeviceLost(_) => "DEVICE_LOST",
            Error::Unsupported { .. } => "UNSUPPORTED",
            Error::UnsupportedByModel { .. } => "UNSUPPORTED",
            Error::ContextFull { .. } => "CONTEXT_OVERFLOW",
            Error::BadModelFile { .. } => "BAD_MODEL_FILE",
            Error::UnsupportedConfig { .. } => "UNSUPPORTED_MODEL",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::Network { .. } => "NETWORK",
            Error::Cancelled(_) => "ABORTED",
            Error::Tokenizer(_) => "TOKENIZER",
            Error::Internal(_) => "INTERNAL",
            Error::ModelTooLarge { .. } => "MODEL_TOO_LARGE",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_upper_snake_case() {
        let all = [
            Error::NoAdapter(String::new()),
            Error::DeviceLost(String::new()),
            Error::ContextFull {
                cache: String::new(),
                len: 1,
                adding: 2,
                max: 2,
            },
            Error::Cancelled(String::new()),
            Error::Network {
                url: String::new(),
                detail: String::new(),
            },
            Error::BadModelFile {
                file: String::new(),
                detail: String::new(),
            },
        ];
        let codes: Vec<_> = all.iter().map(Error::code).collect();
        assert_eq!(
            codes,
            [
                "WEBGPU_UNAVAILABLE",
                "DEVICE_LOST",
                "CONTEXT_OVERFLOW",
                "ABORTED",
                "NETWORK",
                "BAD_MODEL_FILE"
            ]
        );
        assert!(codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')));
    }

    /// One value of every variant.
    fn every_variant() -> Vec<Error> {
        let s = String::new;
        vec![
            Error::NoAdapter(s()),
            Error::RequestDevice(s()),
            Error::Limit {
                context: s(),
                limit: "",
                needed: 0,
                available: 0,
            },
            Error::Shape { op: "", detail: s() },
            Error::BadInput { op: "", detail: s() },
            Error::Aliased {
                op: "",
                written: s(),
                other: s(),
            },
            Error::DType {
                op: "",
                tensor: s(),
                got: s(),
                expected: s(),
            },
            Error::Data {
                tensor: s(),
                detail: s(),
            },
            Error::Gpu {
                context: None,
                message: s(),
            },
            Error::Pipeline {
                kernel: "",
                variant: s(),
                message: s(),
            },
            Error::Readback {
                what: s(),
                message: s(),
            },
            Error::DeviceLost(s()),
            Error::Unsupported {
                kernel: "",
                variant: s(),
                why: s(),
            },
            Error::UnsupportedByModel { what: "", why: s() },
            Error::ContextFull {
                cache: s(),
                len: 0,
                adding: 0,
                max: 0,
            },
            Error::BadModelFile { file: s(), detail: s() },
            Error::UnsupportedConfig {
                file: s(),
                field: s(),
                value: s(),
                supported: s(),
            },
            Error::NotFound { file: s() },
            Error::Network { url: s(), detail: s() },
            Error::Cancelled(s()),
            Error::ModelTooLarge {
                needed: 0,
                limit: "",
                available: 0,
                detail: s(),
            },
            Error::Tokenizer(s()),
            Error::Internal(s()),
            Error::InvalidArgument {
                field: s(),
                detail: s(),
            },
        ]
    }

    #[test]
    fn every_code_is_in_the_js_types_and_the_js_error_table() {
        let dts = include_str!("../js/index.d.ts");
        let readme = include_str!("../js/README.md");
        let table = &readme[readme.find("## Errors").unwrap_or(0)..];
        for e in every_variant() {
            let code = e.code();
            assert!(
                dts.contains(&format!("'{code}'")),
                "{code} is missing from js/index.d.ts's KjarniErrorCode"
            );
            assert!(
                table.contains(&format!("`{code}`")),
                "{code} is missing from js/README.md's error table"
            );
        }
    }

    #[test]
    fn aliasing_is_not_a_shape_error() {
        let e = Error::Aliased {
            op: "norm",
            written: "y".into(),
            other: "x".into(),
        };
        assert_eq!(e.code(), "ALIASED");
        assert_eq!(
            e.to_string(),
            "norm: 'y' is written and 'x' is bound too, but they share one buffer (not supported in place)"
        );
    }
}
