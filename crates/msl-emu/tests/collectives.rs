//! SIMD-group semantics the emulator must reproduce exactly: collectives under
//! divergence and early exit, and a 48-thread threadgroup whose second simdgroup
//! has only 16 lanes. Inputs are small integers in f32, so every sum is exact
//! and results are compared for equality.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Buffer, FunctionConstants};

fn small_integers(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.below(101) as f32 - 50.0).collect()
}

/// What one simdgroup of the divergent kernel writes, given the values of its
/// live lanes (lanes 0..live).
fn divergent_reference(v: &[f32], out: &mut [f32]) {
    const OUTPUTS: usize = 8;
    let live = v.len();
    for lane in 0..live {
        let o = &mut out[lane * OUTPUTS..(lane + 1) * OUTPUTS];
        let mut in_branch = (0..live).filter(|l| (l % 3 == 0) == (lane % 3 == 0));
        if lane % 3 == 0 {
            o[0] = in_branch.clone().map(|l| v[l]).sum();
            o[1] = in_branch.filter(|&l| l <= lane).map(|l| v[l]).sum();
        } else {
            o[0] = in_branch
                .clone()
                .map(|l| v[l])
                .fold(f32::NEG_INFINITY, f32::max);
            o[1] = v[in_branch.next().unwrap()];
        }
        o[2] = (0..=lane % 4)
            .map(|i| (0..live).filter(|l| l % 4 >= i).count() as f32)
            .sum();
    }
    let reached_total: f32 = (0..live).map(|l| out[l * OUTPUTS + 2]).sum();
    for lane in 0..live {
        out[lane * OUTPUTS + 3] = reached_total;
    }
    if live == 32 {
        // simd_shuffle_down leaves the top `offset` lanes with their own value.
        let mut r = v.to_vec();
        for offset in [16, 8, 4, 2, 1] {
            r = (0..32)
                .map(|l| r[l] + if l + offset < 32 { r[l + offset] } else { r[l] })
                .collect();
        }
        for lane in 0..32 {
            let o = &mut out[lane * OUTPUTS..(lane + 1) * OUTPUTS];
            o[4] = r[lane];
            o[5] = v[lane ^ 5];
            o[6] = v[(lane * 7) % 32];
            // simd_shuffle_up leaves the bottom `delta` lanes with their own value.
            o[7] = if lane >= 3 { v[lane - 3] } else { v[lane] };
        }
    }
}

#[test]
fn divergent_collectives_only_combine_active_lanes() {
    // 200 live threads in 4 threadgroups of 64: simdgroup 6 has 8 live lanes and
    // simdgroup 7 none at all.
    let (n, groups, threads) = (200usize, 4u32, 64u32);
    const OUTPUTS: usize = 8;
    let total_threads = (groups * threads) as usize;
    let mut rng = Rng::new(50);
    let x = small_integers(&mut rng, total_threads);
    let lib = load("divergent_collectives.metal");
    let pipe = lib
        .pipeline("divergent_collectives", &FunctionConstants::default())
        .unwrap();
    let xb = Buffer::from_slice(&x);
    let ob = Buffer::new(total_threads * OUTPUTS * 4);
    let n_bytes = (n as u32).to_le_bytes();
    let stats = dispatch_threadgroups(
        &pipe,
        groups.into(),
        threads.into(),
        &[buf(0, &xb), buf(1, &ob), bytes(2, &n_bytes)],
    )
    .unwrap();
    assert_eq!(stats.threads, total_threads as u64);

    // Threads past n write nothing, so their outputs stay zero.
    let mut want = vec![0.0f32; total_threads * OUTPUTS];
    for base in (0..total_threads).step_by(32) {
        let live = n.saturating_sub(base).min(32);
        divergent_reference(
            &x[base..base + live],
            &mut want[base * OUTPUTS..(base + 32) * OUTPUTS],
        );
    }
    let got = ob.read::<f32>();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g,
            w,
            "thread {} (lane {}) output {}",
            i / OUTPUTS,
            (i / OUTPUTS) % 32,
            i % OUTPUTS
        );
    }
}

#[test]
fn threadgroup_of_48_threads_has_a_16_lane_simdgroup() {
    let (groups, threads) = (3u32, 48u32);
    const OUTPUTS: usize = 9;
    let total = (groups * threads) as usize;
    let mut rng = Rng::new(51);
    let x = small_integers(&mut rng, total);
    let lib = load("partial_simdgroup.metal");
    let pipe = lib
        .pipeline("partial_simdgroup", &FunctionConstants::default())
        .unwrap();
    let xb = Buffer::from_slice(&x);
    let ob = Buffer::new(total * OUTPUTS * 4);
    let stats = dispatch_threadgroups(
        &pipe,
        groups.into(),
        threads.into(),
        &[buf(0, &xb), buf(1, &ob)],
    )
    .unwrap();
    assert_eq!(stats.threadgroups, groups as u64);
    assert_eq!(stats.threads, total as u64);

    let got = ob.read::<f32>();
    for g in 0..groups as usize {
        let tg = &x[g * 48..(g + 1) * 48];
        let tg_total: f32 = tg.iter().sum();
        for tid in 0..48 {
            let (sgid, lane) = (tid / 32, tid % 32);
            let simd = &tg[sgid * 32..(sgid * 32 + 32).min(48)];
            let want = [
                tid as f32,
                sgid as f32,
                lane as f32,
                32.0, // threads_per_simdgroup is the execution width, even for a short group
                2.0,
                simd.len() as f32,
                simd[..lane].iter().sum(),
                tg_total,
                48.0,
            ];
            let at = (g * 48 + tid) * OUTPUTS;
            assert_eq!(
                &got[at..at + OUTPUTS],
                &want,
                "threadgroup {g} thread {tid}"
            );
        }
    }
}
