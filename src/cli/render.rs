//! EDGE: text renderings several commands share: vault text made safe to print, an issuer
//! line, a certificate line, a duration.

use std::borrow::Cow;

use crate::model::Api;
use crate::vault::{IssuerView, LiveCert};

/// Text from a vault file or a certificate, safe to print: control characters (a newline that
/// would forge a line of `audit log`, an escape sequence that would drive the terminal) are
/// shown escaped.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// [`printable`] over a list, joined with `sep`.
pub fn printable_list(items: &[String], sep: &str) -> String {
    items
        .iter()
        .map(|s| printable(s))
        .collect::<Vec<_>>()
        .join(sep)
}

/// One issuer, as `issuer list` and `status` print it (Kubernetes issuers say so at the end).
pub fn issuer_line(v: &IssuerView) -> String {
    format!(
        "{:<12} {:<8}{} {:<10} {:<6} {} .. {}  issued {}, live {}{}",
        printable(&v.id),
        v.state.as_str(),
        if v.signing { "*" } else { " " },
        printable(&v.algorithm),
        v.key_store,
        printable(&v.not_before),
        printable(&v.not_after),
        v.issued,
        v.live,
        if v.api == Api::Kubernetes {
            "  (kubernetes)"
        } else {
            ""
        }
    )
}

/// One live certificate, as reports list it (a kubeconfig's: user, groups, `(kubernetes)`).
pub fn cert_line(c: &LiveCert) -> String {
    format!(
        "  {}  {}  {}  by {}  until {}{}{}",
        printable(&c.serial),
        printable(c.holder.as_deref().unwrap_or("(no holder)")),
        printable_list(&c.roles, ","),
        printable(&c.issuer),
        printable(&c.not_after),
        if c.break_glass { "  BREAK-GLASS" } else { "" },
        if c.api == Api::Kubernetes {
            "  (kubernetes)"
        } else {
            ""
        }
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
