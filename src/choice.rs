//! Named choices: the enums whose values have a name on the command line, in model files,
//! tuning files and Python (`--model cnn-lstm`, `precision="bf16"`). The library spells them;
//! the command line only lists them (clap lives in the CLI alone).

/// One value of a [`Choice`] with its spellings and what it means.
#[derive(Clone, Copy, Debug)]
pub struct Named<T: 'static> {
    pub value: T,
    /// The name the value is written with.
    pub name: &'static str,
    /// Other spellings accepted when reading.
    pub aliases: &'static [&'static str],
    /// The value's doc comment, one entry per line (help text).
    pub docs: &'static [&'static str],
}

/// An enum whose values are named: see [`choices!`](crate::choices).
pub trait Choice: Sized + Copy + PartialEq + 'static {
    /// Every value, in the order help lists them.
    fn all() -> &'static [Named<Self>];

    /// The name the value is written with.
    fn name(self) -> &'static str {
        Self::all().iter().find(|n| n.value == self).map(|n| n.name).expect("every value is named")
    }

    /// The value a name or alias spells.
    fn from_name(s: &str) -> Option<Self> {
        Self::all().iter().find(|n| n.name == s || n.aliases.contains(&s)).map(|n| n.value)
    }

    /// Every name, for error messages ("one of a, b, c").
    fn names() -> Vec<&'static str> {
        Self::all().iter().map(|n| n.name).collect()
    }

    /// Parses a name, or says which names there are; `what` names the setting in the error.
    fn parse_named(what: &str, s: &str) -> anyhow::Result<Self> {
        Self::from_name(s).ok_or_else(|| anyhow::anyhow!("{what}={s:?}: expected one of {}", Self::names().join(", ")))
    }
}

/// The help text of a value: its doc comment's lines joined, as one paragraph, without a
/// closing full stop (as clap writes a value's help).
pub fn help(docs: &[&str]) -> String {
    let text = docs.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    match text.strip_suffix('.') {
        Some(short) if !short.ends_with('.') => short.to_string(),
        _ => text,
    }
}

/// Declares an enum and its names: `Variant = "name" | "alias"`, each value's doc comment kept
/// as its help (and `#[default]` after it, for `derive(Default)`). Implements [`Choice`], `Display` (the name) and `FromStr` (name or alias).
#[macro_export]
macro_rules! choices {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $( $(#[doc = $doc:literal])* $(#[default $($default:tt)?])? $variant:ident = $spelling:literal $(| $alias:literal)* ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $( $(#[doc = $doc])* $(#[default $($default)?])? $variant ),*
        }

        impl $crate::choice::Choice for $name {
            fn all() -> &'static [$crate::choice::Named<Self>] {
                &[$($crate::choice::Named { value: $name::$variant, name: $spelling, aliases: &[$($alias),*], docs: &[$($doc),*] }),*]
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }

        impl std::str::FromStr for $name {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<Self> {
                <Self as $crate::choice::Choice>::parse_named(stringify!($name), s)
            }
        }
    };
}
