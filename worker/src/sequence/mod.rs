//! The sequencing engine both drivers share: what refuses a committed partition
//! ([`policy`]).

pub mod policy;
