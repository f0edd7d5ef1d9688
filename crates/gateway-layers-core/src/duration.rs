//! Durations in configuration files, one syntax for every layer: `"250ms"`, `"1.5s"`,
//! `"5m"`, `"1h"`, `"1d"`, or a bare number of **milliseconds** (`250`, `"250"`).
//!
//! ```
//! use std::time::Duration;
//! use gateway_layers_core::duration::parse;
//!
//! assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(parse("2"), Ok(Duration::from_millis(2)));
//! assert!(parse("soon").is_err());
//! ```
//!
//! With the `serde` feature, [`deserialize`] and [`deserialize_option`] are
//! `#[serde(deserialize_with = ...)]` helpers accepting a string or an integer.

use std::time::Duration;

/// Parses a duration; see the [module docs](self) for the syntax.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (e.g. \"250ms\", \"30s\", \"5m\")"))?;
    let seconds = match unit.trim() {
        "" | "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (ms, s, m, h, d)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Raw {
    Millis(u64),
    Text(String),
}

/// Deserializes a duration from a string or a number of milliseconds.
#[cfg(feature = "serde")]
pub fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    use serde::{Deserialize, de::Error};
    match Raw::deserialize(deserializer)? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(text) => parse(&text).map_err(D::Error::custom),
    }
}

/// Deserializes an optional duration (`null` or absent is `None`).
#[cfg(feature = "serde")]
pub fn deserialize_option<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "deserialize")] Duration);
    Ok(Option::<Wrap>::deserialize(deserializer)?.map(|Wrap(d)| d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        for (text, ms) in [
            ("0", 0),
            ("250", 250),
            ("250ms", 250),
            (" 30s ", 30_000),
            ("1.5s", 1500),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "s", "soon", "1w", "-1s", "1e400s", "1..2s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
