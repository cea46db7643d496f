pub mod analyze;
pub mod bench;
pub mod eval;
pub mod interop;
pub mod summary;
pub mod train;
