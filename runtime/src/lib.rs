//! Model runtimes behind one contract (Rafiki's template interface): built-in Rust templates and
//! Python templates run in a subprocess. The contract and templates arrive with the training
//! issue; the crate exists now so the workspace has its final shape.
