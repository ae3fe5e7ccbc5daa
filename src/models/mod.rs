//! Model architectures built from the ops.

pub mod bert;
