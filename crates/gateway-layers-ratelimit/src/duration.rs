//! Durations in configuration use the shared syntax of `gateway_layers_core::duration`
//! (`"500ms"`, `"1s"`, `"5m"`, `"1h"`, `"1d"`, or a bare number of milliseconds); this
//! module formats them for policy names.

use std::time::Duration;

#[cfg(feature = "serde")]
pub(crate) use gateway_layers_core::duration::{
    deserialize, deserialize_option as deserialize_opt,
};

/// `1s`, `1m`, `1h`, `1d`, `250ms`: the shortest exact unit.
pub(crate) fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) || ms == 0 {
        return format!("{}ns", d.as_nanos());
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_uses_the_shortest_exact_unit() {
        assert_eq!(format(Duration::from_secs(1)), "1s");
        assert_eq!(format(Duration::from_secs(60)), "1m");
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::from_secs(86_400)), "1d");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }
}
