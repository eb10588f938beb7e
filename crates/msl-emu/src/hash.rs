//! A 128-bit content hash for cache keys (two independent 64-bit FNV-1a style
//! lanes with a final avalanche); collisions only cost a wrong cache hit, and
//! at 128 bits they do not happen in practice.

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Hash128 {
    a: u64,
    b: u64,
}

impl Hash128 {
    pub fn new() -> Hash128 {
        Hash128 {
            a: 0xcbf2_9ce4_8422_2325,
            b: 0x6c62_272e_07bb_0142,
        }
    }

    pub fn bytes(&mut self, data: &[u8]) {
        for &x in data {
            self.a = (self.a ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3);
            self.b = (self.b ^ x as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
        // Length separation so ("ab","c") and ("a","bc") differ.
        self.a = (self.a ^ data.len() as u64).wrapping_mul(0x0000_0100_0000_01b3);
        self.b = (self.b ^ data.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn mix(mut x: u64) -> u64 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    pub fn value(&self) -> u128 {
        ((Self::mix(self.a) as u128) << 64) | Self::mix(self.b ^ self.a.rotate_left(17)) as u128
    }

    pub fn hex(&self) -> String {
        format!("{:032x}", self.value())
    }
}
