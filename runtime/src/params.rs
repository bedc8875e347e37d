//! The binary format of saved model parameters.
//!
//! ```text
//! magic      8 bytes   b"DUMAPRMS"
//! version    u16 LE    FORMAT_VERSION
//! name len   u16 LE
//! name       UTF-8     the template's name, e.g. "LogisticRegression"
//! payload    postcard  the template's own state
//! ```
//!
//! The header is read before the payload so that loading another template's parameters, a newer
//! format or a random blob fails with a message saying which, instead of a decoding error deep in
//! the payload. Postcard keeps every `f64` bit for bit, so a loaded model predicts exactly what the
//! saved one did. Changing any payload type means bumping [`FORMAT_VERSION`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TemplateError;

const MAGIC: &[u8; 8] = b"DUMAPRMS";

/// The parameters format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// What the header of saved parameters says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParametersHeader {
    pub format_version: u16,
    pub template: String,
}

/// Reads the header of saved parameters, e.g. to tell which template they belong to.
pub fn read_header(bytes: &[u8]) -> Result<ParametersHeader, TemplateError> {
    read_header_and_payload(bytes).map(|(header, _)| header)
}

/// Writes `payload` behind a header naming `template`.
pub(crate) fn encode<T: Serialize>(template: &str, payload: &T) -> Result<Vec<u8>, TemplateError> {
    let name_len = u16::try_from(template.len())
        .map_err(|_| TemplateError::parameters("the template name is too long"))?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + template.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&name_len.to_le_bytes());
    bytes.extend_from_slice(template.as_bytes());
    postcard::to_extend(payload, bytes)
        .map_err(|e| TemplateError::parameters(format!("cannot encode the parameters: {e}")))
}

/// Reads parameters written by [`encode`] for `template`.
pub(crate) fn decode<T: DeserializeOwned>(
    template: &str,
    bytes: &[u8],
) -> Result<T, TemplateError> {
    let (header, payload) = read_header_and_payload(bytes)?;
    if header.format_version != FORMAT_VERSION {
        return Err(TemplateError::parameters(format!(
            "parameters format version {} is not supported; this build reads version {FORMAT_VERSION}",
            header.format_version
        )));
    }
    if header.template != template {
        return Err(TemplateError::parameters(format!(
            "these parameters were saved by template `{}`, not `{template}`",
            header.template
        )));
    }
    let (value, rest) = postcard::take_from_bytes(payload).map_err(|e| {
        TemplateError::parameters(format!("the `{template}` payload is corrupt: {e}"))
    })?;
    if !rest.is_empty() {
        return Err(TemplateError::parameters(format!(
            "the `{template}` payload is corrupt: {} unexpected bytes after its end",
            rest.len()
        )));
    }
    Ok(value)
}

fn read_header_and_payload(bytes: &[u8]) -> Result<(ParametersHeader, &[u8]), TemplateError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
        TemplateError::parameters(
            "not Duma model parameters (the magic bytes `DUMAPRMS` are missing)",
        )
    })?;
    let truncated = || TemplateError::parameters("the parameters header is truncated");
    let (format_version, rest) = split_u16(rest).ok_or_else(truncated)?;
    let (name_len, rest) = split_u16(rest).ok_or_else(truncated)?;
    if rest.len() < usize::from(name_len) {
        return Err(truncated());
    }
    let (name, payload) = rest.split_at(usize::from(name_len));
    let template = std::str::from_utf8(name)
        .map_err(|_| TemplateError::parameters("the template name in the header is not UTF-8"))?
        .to_owned();
    Ok((
        ParametersHeader {
            format_version,
            template,
        },
        payload,
    ))
}

fn split_u16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<Vec<f64>, TemplateError>) -> String {
        match result {
            Err(TemplateError::InvalidParameters { reason }) => reason,
            other => panic!("expected InvalidParameters, got {other:?}"),
        }
    }

    #[test]
    fn payload_round_trips_bit_for_bit() {
        let values = vec![0.1 + 0.2, f64::MIN_POSITIVE, -1e300, 1.0 / 3.0];
        let bytes = encode("T", &values).unwrap();
        assert_eq!(
            read_header(&bytes).unwrap(),
            ParametersHeader {
                format_version: FORMAT_VERSION,
                template: "T".into()
            }
        );
        let back: Vec<f64> = decode("T", &bytes).unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_kind_of_bad_parameters_says_what_is_wrong() {
        let bytes = encode("Ridge", &vec![1.0_f64]).unwrap();

        assert!(message(decode("Forest", &bytes)).contains("saved by template `Ridge`"));
        assert!(message(decode("Ridge", b"garbage")).contains("magic bytes"));
        assert!(message(decode("Ridge", &bytes[..10])).contains("truncated"));

        let mut newer = bytes.clone();
        newer[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert!(message(decode("Ridge", &newer)).contains("version 2 is not supported"));

        let mut longer = bytes.clone();
        longer.push(0);
        assert!(message(decode("Ridge", &longer)).contains("unexpected bytes"));

        let cut = &bytes[..bytes.len() - 3];
        assert!(message(decode("Ridge", cut)).contains("corrupt"));
    }
}
