//! Request bodies with a unique id in each: the template's `{rid}` placeholders are replaced by
//! the request's id, so every request can be found in the nodes' served logs (the `[rid:ID]`
//! marker) and no cache can answer two requests with one computation.

use std::sync::Arc;

use bytes::Bytes;

/// The placeholder replaced by a request's id.
pub const PLACEHOLDER: &str = "{rid}";

/// A body cut at its placeholders once, so a request's body costs one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Vec<u8>>,
}

impl Template {
    /// `body` with zero or more `{rid}` placeholders.
    pub fn new(body: &str) -> Self {
        Self {
            parts: body
                .split(PLACEHOLDER)
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Whether the body carries the id (a template without one cannot be audited).
    pub fn has_id(&self) -> bool {
        self.parts.len() > 1
    }

    /// The body of the request with `id`.
    pub fn render(&self, id: &str) -> Bytes {
        let size =
            self.parts.iter().map(Vec::len).sum::<usize>() + id.len() * (self.parts.len() - 1);
        let mut body = Vec::with_capacity(size);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(id.as_bytes());
            }
            body.extend_from_slice(part);
        }
        Bytes::from(body)
    }
}

/// Makes request `n`'s body from its number and id.
pub type Render = dyn Fn(u64, &str) -> Bytes + Send + Sync;

/// Each request's body: one template for all, or a body of its own per request (a workload's
/// drawn lengths, a trace's prompts), made when the request is sent.
#[derive(Clone)]
pub enum Bodies {
    /// One template, its `{rid}` replaced per request.
    Same(Template),
    /// Request `n` with id `id` gets `render(n, id)`.
    Each(Arc<Render>),
}

impl Bodies {
    /// The body of request `n`, whose id is `id`.
    pub fn render(&self, n: u64, id: &str) -> Bytes {
        match self {
            Bodies::Same(template) => template.render(id),
            Bodies::Each(render) => render(n, id),
        }
    }
}

impl From<Template> for Bodies {
    fn from(template: Template) -> Self {
        Bodies::Same(template)
    }
}

impl std::fmt::Debug for Bodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bodies::Same(template) => f.debug_tuple("Same").field(template).finish(),
            Bodies::Each(_) => f.write_str("Each(..)"),
        }
    }
}

/// A request id: a run prefix and a number, short enough to stay under the nodes' 128-byte cap.
pub fn request_id(run: &str, n: u64) -> String {
    format!("{run}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_replaced() {
        let t = Template::new(r#"{"input":"text {rid} [rid:{rid}]"}"#);
        assert!(t.has_id());
        assert_eq!(&t.render("a-7")[..], br#"{"input":"text a-7 [rid:a-7]"}"#);
        let plain = Template::new("{}");
        assert!(!plain.has_id());
        assert_eq!(&plain.render("x")[..], b"{}");
    }
}
