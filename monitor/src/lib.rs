//! Switchyard's monitoring side: the sample collector ([`collector`]), which also judges the
//! filter's shadow comparisons ([`compare`]), and the drift monitor ([`drift`]) that reads what
//! it stores.

pub mod collector;
pub mod compare;
pub mod drift;
