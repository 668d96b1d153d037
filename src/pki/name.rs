//! Distinguished names encoded as Go's `pkix.Name.ToRDNSequence` encodes them.
//!
//! Go puts all Organization values into ONE multi-valued RDN (a DER SET OF, sorted by encoding),
//! in the attribute order C, ST, L, street, postalCode, O, OU, CN, serialNumber, and uses
//! PrintableString when every character allows it, else UTF8String
//! (reference/talos-formats.md §0.3). rcgen 0.14 cannot write several O values (rcgen #81).

use crate::der::{self, DerError, tag};

const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a]; // 2.5.4.10
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3

/// Whether Go would encode `s` as a PrintableString (X.680 PrintableString alphabet).
pub fn is_printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

fn attribute(oid: &[u8], value: &str) -> Result<Vec<u8>, DerError> {
    let string_tag = if is_printable(value) {
        tag::PRINTABLE_STRING
    } else {
        tag::UTF8_STRING
    };
    der::sequence(&[
        &der::tlv(tag::OID, oid)?,
        &der::tlv(string_tag, value.as_bytes())?,
    ])
}

/// Encodes a Name with the given organizations (one multi-valued RDN) and an optional common
/// name (its own RDN, after O as Go orders them). No attributes gives the empty SEQUENCE.
pub fn encode(organizations: &[&str], common_name: Option<&str>) -> Result<Vec<u8>, DerError> {
    let mut rdns: Vec<Vec<u8>> = Vec::new();
    if !organizations.is_empty() {
        let mut attrs: Vec<Vec<u8>> = organizations
            .iter()
            .map(|o| attribute(OID_ORGANIZATION, o))
            .collect::<Result<_, _>>()?;
        // DER SET OF: elements sorted by their encodings, compared as octet strings with the
        // shorter one padded by zeros (X.690 §11.6), which makes shorter values come first here.
        attrs.sort_by(|a, b| der_set_order(a, b));
        let content: Vec<u8> = attrs.concat();
        rdns.push(der::tlv(tag::SET, &content)?);
    }
    if let Some(cn) = common_name.filter(|cn| !cn.is_empty()) {
        rdns.push(der::tlv(tag::SET, &attribute(OID_COMMON_NAME, cn)?)?);
    }
    let content: Vec<u8> = rdns.concat();
    der::tlv(tag::SEQUENCE, &content)
}

fn der_set_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    let pad = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..n {
        match pad(a, i).cmp(&pad(b, i)) {
            std::cmp::Ordering::Equal => continue,
            other => return other,
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_name_is_empty_sequence() {
        assert_eq!(encode(&[], None).unwrap(), vec![0x30, 0x00]);
    }

    #[test]
    fn talos_ca_subject() {
        // O=talos as Go writes it: SEQ { SET { SEQ { OID 2.5.4.10, PrintableString "talos" } } }
        assert_eq!(
            encode(&["talos"], None).unwrap(),
            vec![
                0x30, 0x10, 0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x13, 0x05, b't',
                b'a', b'l', b'o', b's'
            ]
        );
    }

    #[test]
    fn roles_in_one_rdn_in_go_order() {
        // Go orders [os:admin, os:reader, os:etcd:backup] by encoding: shorter first.
        let name = encode(&["os:etcd:backup", "os:reader", "os:admin"], None).unwrap();
        let text = String::from_utf8_lossy(&name);
        let a = text.find("os:admin").unwrap();
        let r = text.find("os:reader").unwrap();
        let e = text.find("os:etcd:backup").unwrap();
        assert!(a < r && r < e);
        assert_eq!(name[2], 0x31, "one SET");
        assert_eq!(
            usize::from(name[3]) + 4,
            name.len(),
            "the SET is the only RDN"
        );
    }

    #[test]
    fn utf8_when_not_printable() {
        let name = encode(&["ops_team"], None).unwrap();
        assert!(name.contains(&tag::UTF8_STRING));
    }
}
