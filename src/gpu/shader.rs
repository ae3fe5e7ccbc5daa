//! WGSL assembly: one source file per kernel family, variants by a prelude of constants.
//!
//! A kernel's WGSL is written once. The loader prepends, in this order:
//! 1. the `enable` directives the device and target need (`enable f16;`, and in the browser
//!    `enable subgroups;`, which naga rejects natively but browsers require);
//! 2. `const NAME: TYPE = VALUE;` lines for the variant's constants (workgroup size, tile sizes,
//!    the op selector...), so workgroup sizes and workgroup arrays can depend on them;
//! 3. the chosen reduction helpers (`shaders/common/reduce_shared.wgsl` or `shaders/common/reduce_subgroup.wgsl`)
//!    when the kernel uses `wg_sum` / `wg_max`: both define the same `Lane` struct and functions,
//!    so the kernel body is identical for both paths.

use super::caps::Reduction;

/// A kernel family: one WGSL file.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Name used for labels, pipeline keys and errors (the file stem in `shaders/`).
    pub name: &'static str,
    /// The WGSL text (`include_str!` of `shaders/<name>.wgsl`).
    pub source: &'static str,
    /// Whether the kernel calls the workgroup reduction helpers.
    pub uses_reduction: bool,
}

/// The value of one prelude constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Const {
    /// `const NAME: u32 = Vu;`
    U32(u32),
    /// `const NAME: i32 = Vi;`
    I32(i32),
    /// `const NAME: f32 = V;` (stored as bits so keys stay hashable)
    F32Bits(u32),
    /// `const NAME: bool = V;`
    Bool(bool),
}

impl Const {
    /// An f32 constant.
    pub fn f32(v: f32) -> Self {
        Const::F32Bits(v.to_bits())
    }

    fn wgsl(&self, name: &str) -> String {
        match *self {
            Const::U32(v) => format!("const {name}: u32 = {v}u;\n"),
            Const::I32(v) => format!("const {name}: i32 = {v}i;\n"),
            Const::F32Bits(b) => format!("const {name}: f32 = bitcast<f32>({b}u);\n"),
            Const::Bool(v) => format!("const {name}: bool = {v};\n"),
        }
    }
}

const REDUCE_SHARED: &str = include_str!("../../shaders/common/reduce_shared.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../shaders/common/reduce_subgroup.wgsl");

/// Build the full WGSL text of one variant.
pub fn assemble(kernel: &Kernel, reduction: Option<Reduction>, consts: &[(&'static str, Const)]) -> String {
    let mut s = String::new();
    let subgroups = kernel.uses_reduction && reduction == Some(Reduction::Subgroup);
    if subgroups && cfg!(target_arch = "wasm32") {
        s.push_str("enable subgroups;\n");
    }
    for (name, value) in consts {
        s.push_str(&value.wgsl(name));
    }
    if kernel.uses_reduction {
        s.push_str(if subgroups { REDUCE_SUBGROUP } else { REDUCE_SHARED });
        s.push('\n');
    }
    s.push_str(kernel.source);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_comes_before_the_body_and_picks_the_reduction() {
        let k = Kernel {
            name: "k",
            source: "fn body() {}",
            uses_reduction: true,
        };
        let s = assemble(
            &k,
            Some(Reduction::SharedMemory),
            &[("WG", Const::U32(64)), ("ON", Const::Bool(true))],
        );
        assert!(s.starts_with("const WG: u32 = 64u;\nconst ON: bool = true;\n"));
        assert!(s.contains("var<workgroup> red_scratch"));
        assert!(s.ends_with("fn body() {}"));
        let s = assemble(&k, Some(Reduction::Subgroup), &[]);
        assert!(s.contains("subgroupAdd"));
    }
}
