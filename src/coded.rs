//! Enums whose variants are named by fixed strings in data files and on the wire: the intake's
//! linkIds, the code lists' keys, the card topics. One macro writes each such enum with its list
//! of variants and both directions of its mapping, so the strings live in one place.

/// `coded_enum! { /// doc  pub enum Name (to_code, from_code) { Variant => "code", ... } }`
/// declares the enum (Copy, Eq, Hash, Ord) with `ALL` (every variant, in order), `to_code(self)`
/// and `from_code(&str) -> Option<Self>`.
macro_rules! coded_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($to:ident, $from:ident) {
            $($(#[$variant_meta:meta])* $variant:ident => $code:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every variant, in the order declared.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The variant's string.
            pub fn $to(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// The variant a string names, if any.
            pub fn $from(code: &str) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use coded_enum;
