//! How each request runs over the ledger: the pool's second type parameter.
//!
//! [`Plain`] runs the request path as written; it is the only wrapper a production pool has.
//! `crate::testing` adds a deliberately worse one (a slow request in N, a request in N the books
//! never see), so the gate's self-test and the accounting checks can degrade a pool without a
//! field, a branch or a trait method for it on the production path.

use crate::ledger::{Ledger, RequestBody};

/// How a request runs over the ledger. Sealed: [`Plain`] and the wrappers in [`crate::testing`]
/// are the only ones, since a wrapper sees the ledger's crate-private steps.
pub trait Wrap: sealed::RunRequest + Send + Sync + std::fmt::Debug + 'static {}

/// The request path as written, nothing added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plain;

impl Wrap for Plain {}

#[allow(private_bounds, private_interfaces)] // sealed: see `sealed::RunRequest`
impl sealed::RunRequest for Plain {
    fn run<B: RequestBody>(&self, ledger: &Ledger, body: B) -> B::Output {
        ledger.run(body)
    }
}

pub(crate) mod sealed {
    use crate::ledger::{Ledger, RequestBody};

    /// The method behind [`super::Wrap`], out of users' reach. The sealed-trait idiom: the trait
    /// is `pub` so `Wrap` may name it, while its module and the `RequestBody` it takes stay
    /// crate-private, which is what the type-privacy lints report on it and its impls.
    #[allow(private_bounds, private_interfaces)]
    pub trait RunRequest {
        /// Runs one request's `body` over `ledger`.
        fn run<B: RequestBody>(&self, ledger: &Ledger, body: B) -> B::Output;
    }
}
