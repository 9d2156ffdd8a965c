use sipxdp::dataplane::*;
use sipxdp_common::maps::*;
fn main() -> anyhow::Result<()> {
    let mut dp = Dataplane::load(&LoadOptions {
        log_level: None,
        verifier_statistics: true,
    })?;
    println!("verified {:?}", dp.verified_instructions()?);
    let vip = ipv4_mapped([198, 51, 100, 100]);
    let key = VipKey {
        address: vip,
        port: 5060,
        protocol: PROTOCOL_UDP,
        padding: 0,
    };
    dp.set_vip(
        &key,
        &VipConfig {
            slot: 0,
            flags: 0,
            table_size: 7,
            generation: 0,
        },
    )?;
    dp.set_backend(
        1,
        &Backend {
            destination_mac: [2, 0, 0, 0, 0, 1],
            source_mac: [2, 0, 0, 0, 0, 9],
            ifindex: 1,
            flags: BACKEND_IN_SERVICE,
            address: [0; 16],
            port: 5060,
            padding: [0; 2],
        },
    )?;
    dp.publish_table(&key, &[1; 7])?;
    let body = std::fs::read(std::env::args().nth(1).unwrap())?;
    let mut frame = vec![0u8; 42];
    frame[12] = 8;
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&((body.len() + 28) as u16).to_be_bytes());
    frame[23] = 17;
    frame[30..34].copy_from_slice(&[198, 51, 100, 100]);
    frame[36..38].copy_from_slice(&5060u16.to_be_bytes());
    frame[38..40].copy_from_slice(&((body.len() + 8) as u16).to_be_bytes());
    frame.extend_from_slice(&body);
    let out = dp.test_run(&frame)?;
    println!("action {} mac {:?}", out.action, &out.frame[..12]);
    let mut best = u64::MAX;
    for _ in 0..5 {
        best = best.min(dp.time_run(&frame, 1_000_000)?);
    }
    println!("best {best} ns");
    let mut other = frame.clone();
    other[36..38].copy_from_slice(&5061u16.to_be_bytes());
    let mut best = u64::MAX;
    for _ in 0..5 {
        best = best.min(dp.time_run(&other, 1_000_000)?);
    }
    println!("not-vip best {best} ns");
    let mut ka = frame[..42].to_vec();
    ka[16..18].copy_from_slice(&32u16.to_be_bytes());
    ka[38..40].copy_from_slice(&12u16.to_be_bytes());
    ka.extend_from_slice(b"\r\n\r\n");
    ka.resize(64, 0);
    let mut best = u64::MAX;
    for _ in 0..5 {
        best = best.min(dp.time_run(&ka, 1_000_000)?);
    }
    println!("keepalive best {best} ns");
    for r in sipxdp_common::outcome::Reason::ALL {
        for a in sipxdp_common::outcome::Action::ALL {
            let c = dp.counter(0, a, *r)?;
            if c.packets > 0 {
                println!("{:?} {:?} {:?}", a, r, c);
            }
        }
    }
    Ok(())
}
