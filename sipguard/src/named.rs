//! Values chosen by name: the policy's actions and modes, the XDP attach mode, list file
//! formats. Each type has one table of names, so the command line, the configuration file
//! and the JSON output spell and parse it the same way.

use sipguard_common::{
    config::{DefaultAction, FragmentAction, Mode},
    trust::ReversePath,
};

/// A value with a fixed set of names.
pub trait Named: Sized + Copy + PartialEq + 'static {
    /// What the value is, in errors ("default action").
    const WHAT: &'static str;
    /// Every value: its name and one line of help.
    const CHOICES: &'static [(&'static str, Self, &'static str)];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::CHOICES.iter().find(|(_, v, _)| *v == self).map_or("?", |(n, _, _)| n)
    }

    /// The value a name stands for.
    fn from_name(name: &str) -> Result<Self, String> {
        Self::CHOICES.iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| *v).ok_or_else(|| {
            let names: Vec<&str> = Self::CHOICES.iter().map(|(n, _, _)| *n).collect();
            format!("`{name}`: expected one of {}", names.join(", "))
        })
    }
}

impl Named for DefaultAction {
    const WHAT: &'static str = "default action";
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("pass", Self::Pass, "Inspect, then pass"),
        ("drop", Self::Drop, "Drop what no allowlist names"),
        ("off", Self::Off, "Global default only: destinations without a policy are not inspected"),
    ];
}

impl Named for Mode {
    const WHAT: &'static str = "mode";
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("enforce", Self::Enforce, "Drop what the policy drops"),
        ("monitor", Self::Monitor, "Pass everything, count what would have been dropped"),
    ];
}

impl Named for FragmentAction {
    const WHAT: &'static str = "fragment action";
    const CHOICES: &'static [(&'static str, Self, &'static str)] =
        &[("pass", Self::Pass, "Pass non-first fragments"), ("drop", Self::Drop, "Drop them")];
}

impl Named for ReversePath {
    const WHAT: &'static str = "reverse-path mode";
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        (
            "strict",
            Self::Strict,
            "A source whose route back leaves by another interface is forged: never banned",
        ),
        ("loose", Self::Loose, "Only a source with no route back at all is forged"),
        ("off", Self::Off, "No reverse-path check"),
    ];
}

/// Serde support: `#[serde(default, deserialize_with = "named::option")]` reads a name.
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Named,
{
    let name: String = serde::Deserialize::deserialize(d)?;
    T::from_name(&name).map(Some).map_err(serde::de::Error::custom)
}

/// Serde support for a name that must be there.
pub fn required<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Named,
{
    let name: String = serde::Deserialize::deserialize(d)?;
    T::from_name(&name).map_err(serde::de::Error::custom)
}

/// Checks that every name of `T` parses back to its value (for each type's tests).
#[cfg(test)]
pub(crate) fn assert_names_round_trip<T: Named + std::fmt::Debug>() {
    for (name, value, _) in T::CHOICES {
        assert_eq!(value.name(), *name);
        assert_eq!(T::from_name(name), Ok(*value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_value() {
        assert_names_round_trip::<DefaultAction>();
        assert_names_round_trip::<Mode>();
        assert_names_round_trip::<FragmentAction>();
        assert_names_round_trip::<ReversePath>();
    }

    #[test]
    fn unknown_names_list_the_choices() {
        assert_eq!(
            DefaultAction::from_name("maybe"),
            Err("`maybe`: expected one of pass, drop, off".to_owned())
        );
    }
}
