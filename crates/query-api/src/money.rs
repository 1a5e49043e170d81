//! Money as the API prints it: integer micro-dollars shown as an exact decimal string.

/// Formats micro-dollars as an exact decimal.
pub fn micro_usd_to_string(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::micro_usd_to_string;

    #[test]
    fn micro_dollars_print_exactly() {
        assert_eq!(micro_usd_to_string(0), "0.000000");
        assert_eq!(micro_usd_to_string(1_234_567), "1.234567");
        assert_eq!(micro_usd_to_string(-5), "-0.000005");
    }
}
