//! Headers the user adds to every request the harness sends through a gateway: API keys
//! (`Authorization: Bearer …`) and the per-user headers some gateways queue by (`X-User-ID`).
//!
//! A value may hold `{rid}`, replaced by the request's id; any other `{name}` is refused, so a
//! placeholder meant for a later version is not sent to a gateway as literal text. Headers the
//! harness sets itself (the id it joins logs on, the body's framing, the host) are refused too:
//! a user value there would break the audit or the request. Values are secrets: `Debug`,
//! [`Headers::redacted`] and [`Headers::redact`] show names only, so no result file or printed
//! command line carries a key.

use std::str::FromStr;

use hyper::header::{HeaderName, HeaderValue};

use super::template::{PLACEHOLDER, Template};

/// What replaces a header's value wherever the harness writes it down.
pub const REDACTED: &str = "<redacted>";

/// Headers the harness owns on every request.
const OWNED: [&str; 5] = [
    "x-request-id",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
];

/// Why a `--header` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Not `Name: value`.
    #[error("--header {0:?} is not `Name: value`")]
    Malformed(String),
    /// The name is not a valid HTTP header name.
    #[error("--header {0:?}: not a valid header name")]
    BadName(String),
    /// The value holds a character HTTP does not allow (a control character, a line break).
    #[error("--header {0}: the value holds a character HTTP does not allow")]
    BadValue(String),
    /// A header the harness sets on every request.
    #[error(
        "--header {0}: the harness sets this header itself (it owns {owned})",
        owned = OWNED.join(", ")
    )]
    Owned(String),
    /// A `{placeholder}` other than `{rid}`.
    #[error("--header {name}: unknown placeholder {placeholder} (only {{rid}}, the request's id)")]
    Placeholder {
        /// The header's name.
        name: String,
        /// The placeholder as written.
        placeholder: String,
    },
}

/// One user header: a name and a value that may carry the request's id.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    value: Value,
    /// The value as the user wrote it, kept only to redact it from printed text.
    raw: String,
}

#[derive(Clone, PartialEq, Eq)]
enum Value {
    Fixed(HeaderValue),
    WithId(Template),
}

impl Header {
    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value sent with the request `id`.
    pub fn value(&self, id: &str) -> HeaderValue {
        match &self.value {
            Value::Fixed(v) => v.clone(),
            // Checked at parse time with an id of the same alphabet (ids are ASCII letters,
            // digits and '-'), so rendering cannot make it invalid; the fallback never runs.
            Value::WithId(t) => HeaderValue::from_maybe_shared(t.render(id))
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {REDACTED}", self.name)
    }
}

impl FromStr for Header {
    type Err = HeaderError;

    fn from_str(spec: &str) -> Result<Self, HeaderError> {
        let (name, value) = spec
            .split_once(':')
            .ok_or_else(|| HeaderError::Malformed(spec.to_owned()))?;
        let (name, raw) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(HeaderError::Malformed(spec.to_owned()));
        }
        let name = HeaderName::from_str(name).map_err(|_| HeaderError::BadName(name.to_owned()))?;
        if OWNED.contains(&name.as_str()) {
            return Err(HeaderError::Owned(name.to_string()));
        }
        if let Some(placeholder) = placeholders(raw).find(|p| *p != PLACEHOLDER) {
            return Err(HeaderError::Placeholder {
                name: name.to_string(),
                placeholder: placeholder.to_owned(),
            });
        }
        let bad_value = || HeaderError::BadValue(name.to_string());
        let value = if raw.contains(PLACEHOLDER) {
            let template = Template::new(raw);
            HeaderValue::from_maybe_shared(template.render("run-0")).map_err(|_| bad_value())?;
            Value::WithId(template)
        } else {
            Value::Fixed(HeaderValue::from_str(raw).map_err(|_| bad_value())?)
        };
        Ok(Self {
            name,
            value,
            raw: raw.to_owned(),
        })
    }
}

/// Every `{word}` in `text` (letters, digits, `_`); braces around anything else, such as JSON,
/// are literal text.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('{').filter_map(|(start, _)| {
        let rest = &text[start + 1..];
        let end = rest.find('}')?;
        let word = &rest[..end];
        (!word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| &text[start..start + end + 2])
    })
}

/// The user's headers, in the order given.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

/// The shortest word of a value [`Headers::redact`] removes on its own: a token's words ("sk-…",
/// a base64 credential) are long, while a scheme word such as "Bearer" says nothing secret.
const SECRET_WORD: usize = 8;

impl Headers {
    /// Parses every `Name: value`; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, HeaderError> {
        specs
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// No headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each header.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Each header as `Name: <redacted>`, for result files.
    pub fn redacted(&self) -> Vec<String> {
        self.0.iter().map(|h| format!("{h:?}")).collect()
    }

    /// `text` with every value, and every word of a value of `SECRET_WORD` (8) characters or more,
    /// replaced by [`REDACTED`]: for command lines and gateway output the harness prints.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = self
            .0
            .iter()
            .flat_map(|h| {
                std::iter::once(h.raw.as_str())
                    .chain(h.raw.split_whitespace().filter(|w| w.len() >= SECRET_WORD))
            })
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a whole value goes before the words inside it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
            .into_iter()
            .fold(text.to_owned(), |t, s| t.replace(s, REDACTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> Result<Header, HeaderError> {
        spec.parse()
    }

    #[test]
    fn a_header_is_a_name_and_a_value_with_an_optional_request_id() {
        let h = one("Authorization: Bearer sk-test").unwrap();
        assert_eq!(h.name().as_str(), "authorization");
        assert_eq!(h.value("a-1"), "Bearer sk-test");
        let h = one("X-User-ID: user-{rid}").unwrap();
        assert_eq!(h.value("run-7"), "user-run-7");
        // A colon in the value stays in it; braces around JSON are text, not placeholders.
        assert_eq!(one("X-T: a:b").unwrap().value("x"), "a:b");
        assert_eq!(one(r#"X-J: {"a":1}"#).unwrap().value("x"), r#"{"a":1}"#);
    }

    #[test]
    fn malformed_owned_and_unknown_placeholders_are_refused() {
        assert!(matches!(one("no colon"), Err(HeaderError::Malformed(_))));
        assert!(matches!(one(": value"), Err(HeaderError::Malformed(_))));
        assert!(matches!(one("bad name: v"), Err(HeaderError::BadName(_))));
        assert!(matches!(one("X-A: a\u{1}b"), Err(HeaderError::BadValue(_))));
        for owned in [
            "X-Request-ID",
            "Host",
            "content-length",
            "Content-Type",
            "Transfer-Encoding",
        ] {
            let err = one(&format!("{owned}: x")).unwrap_err();
            assert!(matches!(err, HeaderError::Owned(_)), "{owned}: {err:?}");
        }
        assert_eq!(
            one("X-Tenant: {tenant}").unwrap_err(),
            HeaderError::Placeholder {
                name: "x-tenant".into(),
                placeholder: "{tenant}".into()
            }
        );
        assert!(
            Headers::parse(&["A: 1", "Host: x"]).is_err(),
            "the first bad one fails all"
        );
    }

    #[test]
    fn values_never_show_in_debug_redacted_or_redact() {
        let h = Headers::parse(&["Authorization: Bearer sk-secret-key", "X-User: alice"]).unwrap();
        let shown = format!("{h:?} {:?}", h.redacted());
        assert!(
            !shown.contains("sk-secret-key") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(
            shown.contains("authorization") && shown.contains("x-user"),
            "{shown}"
        );
        let cmd = "LITELLM_MASTER_KEY=sk-secret-key litellm; curl -H 'Authorization: Bearer sk-secret-key' -H 'X-User: alice'";
        let out = h.redact(cmd);
        assert!(
            !out.contains("sk-secret-key") && !out.contains("alice"),
            "{out}"
        );
        assert_eq!(
            out,
            "LITELLM_MASTER_KEY=<redacted> litellm; curl -H 'Authorization: <redacted>' -H 'X-User: <redacted>'"
        );
    }
}
