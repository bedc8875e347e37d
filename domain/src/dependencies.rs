//! Python dependencies declared with a model: package name → version. They end up as pip
//! arguments, so both parts must match strict patterns (no spaces, quotes, URLs or options).

use std::collections::BTreeMap;

/// Package name → version requirement (`"1.5.2"`, `">=1.2"`, or `""` for any version).
pub type Dependencies = BTreeMap<String, String>;

const MAX_LEN: usize = 100;
/// Names pip would take for a local archive or wheel file rather than a package on the index.
const FILE_SUFFIXES: &[&str] = &[
    ".zip", ".whl", ".tar", ".gz", ".tgz", ".bz2", ".tbz", ".xz", ".txz", ".egg", ".py",
];
const OPERATORS: &[&str] = &["==", ">=", "<=", "~=", "!=", "<", ">"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DependencyError {
    #[error(
        "`{0}` is not a valid package name (letters, digits, `.`, `_`, `-`; starting and ending with a letter or digit; not a file name such as `x.tar.gz`)"
    )]
    Name(String),
    #[error(
        "`{version}` is not a valid version for {name} (e.g. `1.5.2`, `>=1.2`, or empty for any)"
    )]
    Version { name: String, version: String },
}

/// Checks names against PEP 508's name rule and versions against a plain-version pattern.
pub fn validate(dependencies: &Dependencies) -> Result<(), DependencyError> {
    for (name, version) in dependencies {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
            && !FILE_SUFFIXES
                .iter()
                .any(|suffix| name.to_ascii_lowercase().ends_with(suffix));
        if !name_ok {
            return Err(DependencyError::Name(name.clone()));
        }
        let bare = OPERATORS
            .iter()
            .find_map(|op| version.strip_prefix(op))
            .unwrap_or(version);
        let version_ok = version.is_empty()
            || (bare.len() <= MAX_LEN
                && bare.starts_with(|c: char| c.is_ascii_alphanumeric())
                && bare.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '*' | '_' | '-')
                }));
        if !version_ok {
            return Err(DependencyError::Version {
                name: name.clone(),
                version: version.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(pairs: &[(&str, &str)]) -> Dependencies {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_names_and_versions_pass() {
        validate(&deps(&[
            ("scikit-learn", "1.5.2"),
            ("torch", ""),
            ("numpy", ">=1.26"),
            ("zope.interface", "6.0"),
            ("a", "1.0.post1"),
        ]))
        .unwrap();
    }

    #[test]
    fn anything_that_could_smuggle_arguments_fails() {
        for (name, version) in [
            ("--index-url", "1"),
            ("numpy; rm -rf /", "1"),
            ("numpy", "1.0 --pre"),
            ("numpy", "`id`"),
            ("http://x/y", ""),
            ("numpy", "-e ."),
            ("", "1"),
            ("np", "$(x)"),
            ("loot.tar.gz", ""),
            ("evil.whl", ""),
            ("pkg.ZIP", ""),
            ("setup.py", ""),
        ] {
            assert!(
                validate(&deps(&[(name, version)])).is_err(),
                "{name} {version}"
            );
        }
    }
}
