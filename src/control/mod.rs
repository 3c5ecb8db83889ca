//! The control plane: the one owner of the rule table ([`store`]), apart from the verdict threads.

pub mod store;
