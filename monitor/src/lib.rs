//! Switchyard's monitoring side: the sample collector ([`collector`]) and, later, the drift
//! monitor that reads what it stores.

pub mod collector;
