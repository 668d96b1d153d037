//! EDGE: text renderings several commands share: an issuer line, a certificate line, a
//! duration.

use crate::vault::{IssuerView, LiveCert};

/// One issuer, as `issuer list` and `status` print it.
pub fn issuer_line(v: &IssuerView) -> String {
    format!(
        "{:<12} {:<8}{} {:<10} {:<6} {} .. {}  issued {}, live {}",
        v.id,
        v.state.as_str(),
        if v.signing { "*" } else { " " },
        v.algorithm,
        v.key_store,
        v.not_before,
        v.not_after,
        v.issued,
        v.live
    )
}

/// One live certificate, as reports list it.
pub fn cert_line(c: &LiveCert) -> String {
    format!(
        "  {}  {}  {}  by {}  until {}{}",
        c.serial,
        c.holder.as_deref().unwrap_or("(no holder)"),
        c.roles.join(","),
        c.issuer,
        c.not_after,
        if c.break_glass { "  BREAK-GLASS" } else { "" }
    )
}

/// A remaining lifetime: `2d3h` or `5h12m`.
pub fn duration_text(seconds: i64) -> String {
    let (d, h, m) = (seconds / 86400, seconds % 86400 / 3600, seconds % 3600 / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else {
        format!("{h}h{m}m")
    }
}
