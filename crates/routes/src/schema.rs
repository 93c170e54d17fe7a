//! The routes file exactly as written: serde types that mirror the YAML.
//!
//! Nothing here is validated beyond its shape; [`crate::compile`] turns these
//! into a [`crate::Table`]. Values keep their source spans so that every
//! later error can point at the line and column it came from.

use marked_yaml::Spanned;
use serde::Deserialize;

/// The top level of `routes.yaml`, without its routes.
///
/// Routes are deserialized one by one (see [`crate::parse`]) so that one bad
/// entry does not hide the errors in the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    /// Schema version the file is written for. Optional; only `1` exists.
    pub version: Option<Spanned<u64>>,
    /// The routes, checked separately; present here so that a missing key is
    /// reported by serde like any other missing field.
    pub routes: serde::de::IgnoredAny,
}

/// One entry of `routes`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefix, starting with `/`. Required.
    pub path: Spanned<String>,
    /// One `host:port`, or a list of them used round robin. Required.
    pub upstream: Spanned<RawUpstreams>,
    /// Exact `Host` to match, port ignored, case-insensitive. Default: any host.
    pub host: Option<Spanned<String>>,
    /// Remove the matched prefix before forwarding. Default: `false`.
    pub strip_prefix: Option<Spanned<bool>>,
    /// Answer a request for exactly the prefix (`/app1`) with a redirect to
    /// its slash form (`/app1/`), as nginx does for `location /app1/`.
    /// Default: `false`.
    pub redirect_bare_prefix: Option<Spanned<bool>>,
    /// Time allowed to open a connection to the upstream. Default: `5s`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Time allowed for each read from the upstream. Default: `60s`.
    pub read_timeout: Option<Spanned<String>>,
}

/// `upstream:` is either one address or a list of them.
#[derive(Debug)]
pub enum RawUpstreams {
    /// `upstream: 10.0.0.7:8080` (its span is the enclosing `Spanned`'s)
    One(String),
    /// `upstream: [10.0.0.7:8080, 10.0.0.8:8080]`
    Many(Vec<Spanned<String>>),
}

// Written by hand rather than `#[serde(untagged)]`: untagged buffers the
// value and loses the spans of list items, and its error ("data did not
// match any variant") tells an operator nothing.
impl<'de> Deserialize<'de> for RawUpstreams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawUpstreams;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"host:port\" or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawUpstreams::One(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawUpstreams::One(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawUpstreams::One(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawUpstreams::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    all.push(item);
                }
                Ok(RawUpstreams::Many(all))
            }
        }
        d.deserialize_any(V)
    }
}

/// A parsed file: the header's version and its routes.
#[derive(Debug)]
pub struct RawFile {
    /// The `version` key, if present.
    pub version: Option<Spanned<u64>>,
    /// The entries of `routes` that could be read, in file order, each with
    /// its 1-based position in the list.
    pub routes: Vec<(usize, RawRoute)>,
}
