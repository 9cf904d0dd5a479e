//! Remediation rules: parsing the three accepted formats into one model, and matching.
//! parse.rs reads a file (error.rs: where it is wrong), matching.rs finds the rule for a
//! problem, view.rs shows one.

pub mod compiled;
pub mod duration;
mod error;
pub mod keptn;
pub mod matcher;
mod matching;
pub mod model;
pub mod own;
mod parse;
mod view;

pub use error::RulesError;
pub use model::{
    Action, Percent, Policy, Rule, RuleSet, RulesFormat, ScaleChange, TitleMatch, UnleashName,
};
pub use parse::parse;
#[doc(hidden)]
pub use parse::parse_probed;
