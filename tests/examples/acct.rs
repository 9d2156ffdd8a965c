use sipxdp_tests::{
    e2e_lab::E2eLab,
    sipgen::{Call, Rng},
};
use std::time::{Duration, Instant};
fn stat() -> String {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}
fn main() -> anyhow::Result<()> {
    let mut lab = E2eLab::start()?;
    let bye = Call::random(&mut Rng::new(1), 0).bye(lab.client_address(), lab.vip());
    let g = lab.generator(&bye)?;
    lab.pass_to_stack()?;
    lab.route_vip_to_first_backend()?;
    let ifindex = lab.client_ifindex()?;
    let before = lab.received()?;
    println!("{}", stat());
    let t = Instant::now();
    lab.client().enter_thread(|| -> anyhow::Result<()> {
        let r = |who| unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut u);
            (
                u.ru_stime.tv_sec * 1000000 + u.ru_stime.tv_usec,
                u.ru_utime.tv_sec * 1000000 + u.ru_utime.tv_usec,
            )
        };
        let r0 = r(libc::RUSAGE_THREAD);
        for _ in 0..1000 {
            g.send(ifindex, 60)?;
            std::thread::sleep(Duration::from_micros(900));
        }
        println!(
            "thread sys/user us {:?} -> {:?}",
            r0,
            r(libc::RUSAGE_THREAD)
        );
        Ok(())
    })??;
    println!("{:?}", t.elapsed());
    println!("{}", stat());
    std::thread::sleep(Duration::from_millis(500));
    println!("received {}", lab.received()? - before);
    Ok(())
}
