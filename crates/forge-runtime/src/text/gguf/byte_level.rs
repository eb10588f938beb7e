//! GPT-2's byte-level alphabet: every byte has a printable character standing for it, so a
//! byte-level BPE vocabulary holds text, and any byte string can be spelt with its tokens.

use std::sync::OnceLock;

/// The characters bytes are written as: printable Latin-1 bytes as themselves, the others
/// (controls, space, the non-breaking space, the soft hyphen) as U+0100 onwards, in byte order.
fn table() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut table = ['\0'; 256];
        let mut next = 0x100u32;
        for byte in 0..=255u8 {
            table[byte as usize] = if printable(byte) {
                char::from(byte)
            } else {
                next += 1;
                char::from_u32(next - 1).expect("U+0100..U+0143 are characters")
            };
        }
        table
    })
}

/// `bytes` in the byte-level alphabet.
pub(super) fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| table()[b as usize]).collect()
}

/// The byte a character of the alphabet stands for.
pub(super) fn decode_char(c: char) -> Option<u8> {
    let code = c as u32;
    match code {
        0..=0xFF if table()[code as usize] == c => Some(code as u8),
        0x100..=0x143 => table().iter().position(|&t| t == c).map(|b| b as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_and_space_is_g_dot() {
        for byte in 0..=255u8 {
            let text = encode(&[byte]);
            assert_eq!(text.chars().count(), 1);
            assert_eq!(decode_char(text.chars().next().unwrap()), Some(byte));
        }
        assert_eq!(encode(b" \n"), "\u{120}\u{10A}");
        assert_eq!(decode_char('\u{144}'), None);
        assert_eq!(decode_char('\u{A0}'), None);
    }
}
