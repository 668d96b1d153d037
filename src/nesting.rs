//! PURE: a linear pre-check of YAML text before any parser sees it: a size limit and a
//! nesting-depth limit. libyaml's scanner (under serde_yaml) does work proportional to the
//! nesting depth for every token, so a deeply nested document costs quadratic time before the
//! deserializer's own recursion limit is ever reached (a 100 KB `[[[[…` took seconds). This
//! scan is one pass over the bytes and errs on the side of refusing: it counts flow brackets
//! outside quotes and comments, and block nesting by indentation and leading `- `/`? ` markers.

use thiserror::Error;

/// The deepest nesting any file talvault reads needs is under 12 (a multi-document machine
/// config); 64 leaves room and stays far from quadratic trouble.
pub const MAX_DEPTH: usize = 64;

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NestingError {
    /// Larger than the caller's limit.
    #[error("larger than the {max}-byte limit")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nested more than {MAX_DEPTH} levels deep (line {line})")]
    TooDeep {
        /// The line where the limit was passed.
        line: usize,
    },
}

/// Checks `text` (YAML or JSON) against `max_size` bytes and [`MAX_DEPTH`] levels.
pub fn check(text: &[u8], max_size: usize) -> Result<(), NestingError> {
    if text.len() > max_size {
        return Err(NestingError::TooLarge { max: max_size });
    }
    let mut flow = 0usize;
    // Indentations of the open block collections.
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let too_deep = || NestingError::TooDeep { line: n + 1 };
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        let blank = rest.is_empty() || rest[0] == b'#' || rest == b"\r";
        if flow == 0 && !blank {
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
            // `- - - x` and `? ? x` open one collection per marker on the same line.
            let mut markers = 0;
            let mut r = rest;
            while r.len() >= 2 && (r[0] == b'-' || r[0] == b'?') && r[1] == b' ' {
                markers += 1;
                r = r[2..].trim_ascii_start();
            }
            if indents.len() + markers > MAX_DEPTH {
                return Err(too_deep());
            }
        }
        // Flow collections, outside quotes and comments.
        let mut quote: Option<u8> = None;
        let mut prev = b' ';
        let mut i = 0;
        while i < rest.len() {
            let c = rest[i];
            match quote {
                Some(b'"') if c == b'\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    b'"' | b'\'' if matches!(prev, b' ' | b'[' | b'{' | b',' | b':') => {
                        quote = Some(c)
                    }
                    b'#' if prev == b' ' => break,
                    b'[' | b'{' => {
                        flow += 1;
                        if indents.len() + flow > MAX_DEPTH {
                            return Err(too_deep());
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_pass() {
        let doc = b"version: 1\nroles:\n  os:admin:\n    default_ttl: 8h\nlist: [a, [b, {c: d}]]\nq: \"[[[[\"\ns: '{{{{'\n# [[[[[[\n- - - x\n";
        assert_eq!(check(doc, 1 << 20), Ok(()));
    }

    #[test]
    fn deep_or_large_documents_are_refused() {
        let flow = "[".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            check(flow.as_bytes(), 1 << 20),
            Err(NestingError::TooDeep { line: 1 })
        ));
        let mut block = String::new();
        for i in 0..=MAX_DEPTH {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert!(matches!(
            check(block.as_bytes(), 1 << 20),
            Err(NestingError::TooDeep { .. })
        ));
        let dashes = format!("{}x\n", "- ".repeat(MAX_DEPTH + 1));
        assert!(check(dashes.as_bytes(), 1 << 20).is_err());
        assert_eq!(
            check(&[b'a'; 11], 10),
            Err(NestingError::TooLarge { max: 10 })
        );
    }
}
