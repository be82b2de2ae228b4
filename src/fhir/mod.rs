//! Patient record assembly: the prefetch, read leniently into views of the elements the rules
//! use (`views`), then interpreted into the facts the rules read.

pub mod drafts;
pub mod fetch;
pub mod intake;
pub mod interpret;
pub mod prefetch;
pub mod record;
pub mod reference;
pub mod time;
pub mod views;
