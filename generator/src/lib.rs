//! imgedge generator: stands in for the model server (`synth`) and is its upload path.

pub mod synth;
