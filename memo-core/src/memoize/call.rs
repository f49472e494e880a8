//! A Rust function's call as the engine's single flight sees it
//! (`store::Call`): results of an `Outcome` type, stored as it says, loaded
//! only while fresh, not stored below `min_cost`, problems reported.

use std::marker::PhantomData;

use super::function::Function;
use super::outcome::Outcome;
use crate::store::{Call, Engine};
use crate::{Error, Key, Result};

/// A memoized function's call as the engine's single flight sees it
/// (`store::Call`): results of type `O`, stored as `O` says, loaded only
/// while fresh (`ttl`), not stored below `min_cost`, problems reported and
/// the body run instead.
pub(crate) struct Typed<'a, O> {
    pub(crate) f: &'a Function,
    pub(crate) engine: &'a Engine,
    pub(crate) key: &'a Key,
    pub(crate) out: PhantomData<fn() -> O>,
}

impl<O: Outcome> Call for Typed<'_, O> {
    type Out = O;
    type Stop = std::convert::Infallible;
    fn load(&self, engine: &Engine, key: &Key, count: bool) -> Result<Option<O>> {
        Ok(engine
            .get_local::<O::Stored>(key, count)?
            .filter(|v| self.f.fresh::<O>(v))
            .map(O::from_stored))
    }
    fn store(&self, engine: &Engine, key: &Key, out: &O, cost: u32) -> Result<bool> {
        match out.stored() {
            Some(v) => engine
                .put_value_as(key, v, cost, self.f.compression())
                .map(|()| true),
            None => Ok(false),
        }
    }
    fn min_cost_us(&self) -> u64 {
        self.f.min_cost_us()
    }
    fn computing(&self) {
        self.f.missed(self.engine, self.key);
    }
    fn lookup_failed(&self, e: Error) -> std::result::Result<(), Self::Stop> {
        self.f.report(self.key, &e);
        Ok(())
    }
    fn store_failed(&self, e: &Error) {
        self.f.report(self.key, e);
    }
}
