//! Switchyard's monitoring side: the sample collector ([`collector`]), which also judges the
//! filter's shadow comparisons ([`compare`]), and, later, the drift monitor that reads what it
//! stores.

pub mod collector;
pub mod compare;
pub mod drift;
