pub mod bench;
pub mod eval;
pub mod summary;
pub mod train;
