use aya::maps::Array;
use aya::programs::{TestRun, TestRunOptions, Xdp};
fn main() -> anyhow::Result<()> {
    let mut ebpf = aya::EbpfLoader::new()
        .verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS)
        .load(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/sipxdp"
        )))?;
    let prog: &mut Xdp = ebpf.program_mut("sipxdp").unwrap().try_into()?;
    if let Err(e) = prog.load() {
        if let aya::programs::ProgramError::LoadError { verifier_log, .. } = &e {
            let s = verifier_log.to_string();
            std::fs::write("/tmp/full.log", &s).unwrap();
            let l: Vec<_> = s
                .lines()
                .filter(|l| !l.starts_with("mark_precise"))
                .collect();
            for x in &l[l.len().saturating_sub(8)..] {
                println!("{x}");
            }
        }
        return Ok(());
    }
    println!(
        "verified insns {:?}",
        prog.info()?.verified_instruction_count()
    );
    let body = std::fs::read(std::env::args().nth(1).unwrap())?;
    let mut frame = vec![0u8; 42];
    frame[12] = 8;
    frame[14] = 0x45;
    let ulen = (body.len() + 8) as u16;
    frame[38..40].copy_from_slice(&ulen.to_be_bytes());
    frame.extend_from_slice(&body);
    let mut out = vec![0u8; frame.len() + 256];
    let mut best = u128::MAX;
    for _ in 0..5 {
        let r = prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            repeat: 1000000,
            ..Default::default()
        })?;
        best = best.min(r.duration.as_nanos());
    }
    println!("best {best} ns/run");
    let m: Array<_, u64> = Array::try_from(ebpf.map("RESULT").unwrap())?;
    println!(
        "hash {:x} start {} reason {}",
        m.get(&0, 0)?,
        m.get(&1, 0)?,
        m.get(&2, 0)?
    );
    println!(
        "expected {:x}",
        sipxdp_common::hash::xxh64_bytes(b"a84b4c76e66710@pc33.atlanta.example.com", 0)
    );
    Ok(())
}
