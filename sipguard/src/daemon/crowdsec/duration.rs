//! Go's duration syntax (`time.ParseDuration`), which the Local API uses for a decision's
//! time left: `4m59.12s`, `167h59m59.999s`, `-3.5s` (a deleted decision), `0`.

use anyhow::{Context as _, bail};

/// A signed duration in nanoseconds, saturating at `i64`'s range as Go's does not need to.
pub fn parse(s: &str) -> anyhow::Result<i128> {
    parse_inner(s).with_context(|| format!("{s:?} is not a Go duration"))
}

fn parse_inner(s: &str) -> anyhow::Result<i128> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        bail!("empty");
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole: i128 = if digits == 0 { 0 } else { rest[..digits].parse()? };
        rest = &rest[digits..];
        let (mut fraction, mut scale) = (0i128, 1i128);
        let mut fraction_digits = 0;
        if let Some(after) = rest.strip_prefix('.') {
            fraction_digits = after.bytes().take_while(u8::is_ascii_digit).count();
            // Past 18 digits a fraction adds nothing a nanosecond can hold.
            for b in after[..fraction_digits].bytes().take(18) {
                fraction = fraction * 10 + i128::from(b - b'0');
                scale *= 10;
            }
            rest = &after[fraction_digits..];
        }
        if digits == 0 && fraction_digits == 0 {
            bail!("a number is missing");
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => bail!("a unit is missing"),
            other => bail!("unknown unit {other:?}"),
        };
        rest = &rest[unit_len..];
        total += whole * unit + fraction * unit / scale;
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::parse;

    const S: i128 = 1_000_000_000;

    #[test]
    fn reads_what_the_local_api_sends() {
        assert_eq!(parse("4m59.12s").unwrap(), 299 * S + 120_000_000);
        assert_eq!(parse("167h59m59.999999999s").unwrap(), 168 * 3600 * S - 1);
        assert_eq!(parse("-3.5s").unwrap(), -3 * S - S / 2);
        assert_eq!(parse("-1h0m0.25s").unwrap(), -(3600 * S + S / 4));
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("0s").unwrap(), 0);
        assert_eq!(parse("1.5h").unwrap(), 5400 * S);
        assert_eq!(parse(".5s").unwrap(), S / 2);
        assert_eq!(parse("300ms").unwrap(), 3 * S / 10);
        assert_eq!(parse("2µs3ns").unwrap(), 2003);
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "-", "5", "1x", "s", "1.s.", "h1", "1h-2m", "."] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
