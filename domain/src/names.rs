//! Names users choose, each parsed once where it enters (the admin's request types) and carried
//! as its own type afterwards: app names, email addresses, model names and template classes.

use std::fmt;

/// Why a name is refused; the message names the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// An app: the name a user's train jobs (its versions) and inference jobs share. Free text as
    /// in Rafiki (it reaches URL paths percent-encoded and comes back decoded): non-empty, at most
    /// 255 characters, no control characters and no `/` (which could not be told apart from a
    /// path separator).
    AppName
);

name_type!(
    /// An email address as accounts use it: trimmed, at most 254 bytes, one `@`-bearing word.
    Email
);

name_type!(
    /// A model's name, unique among its owner's models: trimmed, non-empty, at most 128 bytes.
    ModelName
);

name_type!(
    /// The Python class a template file defines: an ASCII identifier.
    ModelClass
);

impl AppName {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let problem = if raw.is_empty() {
            "must not be empty"
        } else if raw.chars().count() > Self::MAX_CHARS {
            "must be at most 255 characters"
        } else if raw.chars().any(char::is_control) {
            "must not contain control characters"
        } else if raw.contains('/') {
            "must not contain `/`"
        } else {
            return Ok(Self(raw.to_owned()));
        };
        Err(NameError(format!("app {raw:?} {problem}")))
    }
}

impl Email {
    pub const MAX_BYTES: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let email = raw.trim();
        if email.len() > Self::MAX_BYTES
            || !email.contains('@')
            || email.chars().any(char::is_whitespace)
        {
            return Err(NameError(format!("`{email}` is not an email address")));
        }
        Ok(Self(email.to_owned()))
    }
}

impl ModelName {
    pub const MAX_BYTES: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(NameError("name must not be empty".to_owned()));
        }
        if name.len() > Self::MAX_BYTES {
            return Err(NameError(format!(
                "name is longer than {} characters",
                Self::MAX_BYTES
            )));
        }
        Ok(Self(name.to_owned()))
    }
}

impl ModelClass {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let class = raw.trim();
        let is_identifier = class.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_identifier {
            return Err(NameError(format!(
                "model_class `{class}` is not a Python class name"
            )));
        }
        Ok(Self(class.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_free_text_without_slashes_or_control_characters() {
        assert!(AppName::parse("my app (v2) é").is_ok());
        assert!(AppName::parse(&"a".repeat(255)).is_ok());
        for bad in ["", "a/b", "a\nb", &"a".repeat(256)] {
            assert!(AppName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_are_trimmed_and_need_an_at_and_no_spaces() {
        assert_eq!(Email::parse(" a@b ").unwrap().as_str(), "a@b");
        for bad in ["ab", "a b@c", &format!("{}@b", "a".repeat(254))] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn model_names_and_classes() {
        assert_eq!(ModelName::parse(" m ").unwrap().as_str(), "m");
        assert!(ModelName::parse("  ").is_err());
        assert!(ModelName::parse(&"m".repeat(129)).is_err());
        assert_eq!(ModelClass::parse("_My1").unwrap().as_str(), "_My1");
        for bad in ["1A", "my-class", "a.b", ""] {
            assert!(ModelClass::parse(bad).is_err(), "{bad:?}");
        }
    }
}
