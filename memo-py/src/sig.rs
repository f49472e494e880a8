//! Binding a call's arguments to the function's parameters, so the
//! positional, keyword and default-filled forms of one call are one key.
//! The parameters come from `inspect.signature` once, at decoration; a
//! call binds in Rust (a `Signature.bind` costs microseconds).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

/// `inspect.Parameter.kind`'s values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    PositionalOnly,
    PositionalOrKeyword,
    VarPositional,
    KeywordOnly,
    VarKeyword,
}

impl Kind {
    fn of(n: u8) -> Option<Kind> {
        Some(match n {
            0 => Kind::PositionalOnly,
            1 => Kind::PositionalOrKeyword,
            2 => Kind::VarPositional,
            3 => Kind::KeywordOnly,
            4 => Kind::VarKeyword,
            _ => return None,
        })
    }
}

/// A parameter as Python describes it: name, kind, whether it has a
/// default, and the default.
pub(crate) type ParamSpec = (String, u8, bool, Py<PyAny>);

/// One parameter.
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) default: Option<Py<PyAny>>,
    /// Left out of the key (`ignore=`).
    pub(crate) ignored: bool,
}

/// A function's parameters, in order.
pub(crate) struct Signature {
    params: Vec<Param>,
    /// How many parameters take positional arguments.
    positional: usize,
    var_positional: Option<usize>,
    var_keyword: Option<usize>,
}

/// A call's arguments, one per parameter (`*args` as a tuple, `**kwargs`
/// as a dict).
pub(crate) type Args<'py> = Vec<Bound<'py, PyAny>>;

impl Signature {
    /// From `(name, kind, has_default, default)` (`inspect.Parameter`'s
    /// fields) and the names to leave out of the key.
    pub(crate) fn new(params: Vec<ParamSpec>, ignore: &[String]) -> PyResult<Signature> {
        let mut out = Vec::with_capacity(params.len());
        for (name, kind, has_default, default) in params {
            let default = has_default.then_some(default);
            let kind = Kind::of(kind).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("bad parameter kind {kind}"))
            })?;
            let ignored = ignore.contains(&name);
            out.push(Param {
                name,
                kind,
                default,
                ignored,
            });
        }
        for name in ignore {
            if !out.iter().any(|p| &p.name == name) {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "ignore={name:?}: the function has no parameter of that name"
                )));
            }
        }
        let positional = out
            .iter()
            .take_while(|p| matches!(p.kind, Kind::PositionalOnly | Kind::PositionalOrKeyword))
            .count();
        Ok(Signature {
            var_positional: out.iter().position(|p| p.kind == Kind::VarPositional),
            var_keyword: out.iter().position(|p| p.kind == Kind::VarKeyword),
            params: out,
            positional,
        })
    }

    /// For a call of positional arguments only, to a function without
    /// `*args` or `**kwargs`, that leaves no parameter without a value:
    /// the defaults of the parameters after the given arguments (the
    /// arguments bind in order). `None` for any other call.
    pub(crate) fn positional_fill(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Option<impl Iterator<Item = &Py<PyAny>>> {
        if self.var_positional.is_some()
            || self.var_keyword.is_some()
            || kwargs.is_some_and(|k| !k.is_empty())
            || args.len() > self.positional
        {
            return None;
        }
        let rest = &self.params[args.len()..];
        if rest.iter().any(|p| p.default.is_none()) {
            return None;
        }
        Some(rest.iter().filter_map(|p| p.default.as_ref()))
    }

    /// The parameters.
    pub(crate) fn params(&self) -> &[Param] {
        &self.params
    }

    /// The call's arguments by parameter, or `None` if they do not fit
    /// (the caller then runs the function itself, which raises Python's
    /// own `TypeError`).
    pub(crate) fn bind<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Args<'py>>> {
        let py = args.py();
        let mut slots: Vec<Option<Bound<'py, PyAny>>> = vec![None; self.params.len()];
        let mut extra = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i < self.positional {
                slots[i] = Some(a);
            } else if self.var_positional.is_some() {
                extra.push(a);
            } else {
                return Ok(None);
            }
        }
        let var_kw = PyDict::new(py);
        if let Some(kwargs) = kwargs {
            for (k, v) in kwargs.iter() {
                let k_str = k.cast::<PyString>()?.to_cow()?;
                let found = self.params.iter().position(|p| {
                    p.name == *k_str
                        && matches!(p.kind, Kind::PositionalOrKeyword | Kind::KeywordOnly)
                });
                match found {
                    Some(i) if slots[i].is_some() => return Ok(None),
                    Some(i) => slots[i] = Some(v),
                    None if self.var_keyword.is_some() => var_kw.set_item(k, v)?,
                    None => return Ok(None),
                }
            }
        }
        let mut out = Vec::with_capacity(self.params.len());
        for (p, slot) in self.params.iter().zip(slots) {
            let v = match p.kind {
                Kind::VarPositional => PyTuple::new(py, &extra)?.into_any(),
                Kind::VarKeyword => var_kw.clone().into_any(),
                _ => match (slot, &p.default) {
                    (Some(v), _) => v,
                    (None, Some(d)) => d.bind(py).clone(),
                    (None, None) => return Ok(None),
                },
            };
            out.push(v);
        }
        Ok(Some(out))
    }
}
