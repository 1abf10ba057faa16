//! The rules of [`super::step`], one test each, over the simulated fleet of [`sim`].

mod sim;

use std::collections::BTreeMap;

use sim::*;

use super::control::{abort, pause, resume};
use super::model::{Amount, DeferReason, OnFailure, Phase, Rollout, SiteState};
use super::plan::plan;
use super::step::Decision;

#[test]
fn amounts_parse_and_round() {
    assert_eq!(Amount::parse("x", "10%"), Ok(Amount::Percent(10)));
    assert_eq!(Amount::parse("x", " 3 "), Ok(Amount::Count(3)));
    assert!(Amount::parse("x", "101%").is_err());
    assert!(Amount::parse("x", "-1").is_err());
    assert!(Amount::parse("x", "ten").is_err());
    // Reach rounds up, tolerance rounds down.
    assert_eq!(Amount::Percent(1).reach_of(10), 1);
    assert_eq!(Amount::Percent(33).reach_of(7), 3);
    assert_eq!(Amount::Percent(10).allowed_of(5), 0);
    assert_eq!(Amount::Percent(20).allowed_of(10), 2);
    assert_eq!(Amount::Count(4).allowed_of(1), 4);
}

#[test]
fn percentages_are_cumulative_and_counts_are_per_wave() {
    let sim = Sim::new(
        &request(vec![
            wave(Some("1"), &[]),
            wave(Some("10%"), &[]),
            wave(Some("50%"), &[]),
            wave(Some("100%"), &[]),
        ]),
        &fleet(10, 0),
    );
    let sizes: Vec<usize> = sim.rollout.waves.iter().map(|w| w.sites.len()).collect();
    assert_eq!(sizes, vec![1, 0, 4, 5]);
    let sim = Sim::new(
        &request(vec![wave(Some("33%"), &[]), wave(Some("2"), &[])]),
        &fleet(7, 0),
    );
    let sizes: Vec<usize> = sim.rollout.waves.iter().map(|w| w.sites.len()).collect();
    // 33% of 7 is 2.31, rounded up to 3; then 2 more; the 2 left over form the last wave.
    assert_eq!(sizes, vec![3, 2, 2]);
    assert_eq!(sim.rollout.waves[2].name, "rest");
}

#[test]
fn waves_go_in_order_and_the_canary_selector_goes_first() {
    let mut sim = Sim::new(
        &request(vec![
            wave(None, &[("ring", "canary")]),
            wave(Some("50%"), &[]),
            wave(Some("100%"), &[]),
        ]),
        &fleet(10, 2),
    );
    assert_eq!(sim.rollout.waves[0].sites, vec!["s00", "s01"]);
    sim.tick(0);
    assert_eq!(sim.pinned_to_new(), vec!["s00", "s01"]);
    // The canaries acknowledge and report Ready at the next heartbeat; the next wave starts in that step.
    sim.tick(1);
    assert_eq!(sim.state("s00"), SiteState::Ready);
    assert_eq!(sim.rollout.current_wave, 1);
    assert_eq!(sim.pinned_to_new().len(), 5);
    sim.tick(2);
    assert_eq!(sim.pinned_to_new().len(), 10);
    let decisions = sim.tick(3);
    assert_eq!(sim.rollout.phase, Phase::Succeeded);
    assert!(decisions.contains(&Decision::Settle { commit: TO.into() }));
    // Nobody was pinned before its wave started.
    let first: BTreeMap<&str, u64> = sim.pins.iter().map(|(t, s, _)| (s.as_str(), *t)).collect();
    assert!(first["s00"] < first["s02"] && first["s02"] < first["s09"]);
}

#[test]
fn soak_holds_the_next_wave() {
    let mut r = request(vec![wave(Some("1"), &[]), wave(Some("100%"), &[])]);
    r.soak = Some("30s".into());
    let mut sim = Sim::new(&r, &fleet(4, 0));
    sim.tick(0);
    sim.tick(5); // s00 Ready at 5 s
    assert_eq!(sim.state("s00"), SiteState::Ready);
    sim.tick(34);
    assert_eq!(sim.pinned_to_new(), vec!["s00"], "still soaking");
    sim.tick(35);
    assert_eq!(sim.pinned_to_new().len(), 4);
    // A site that fails during the soak counts.
    let mut sim = Sim::new(&r, &fleet(4, 0));
    sim.tick(0);
    sim.tick(5);
    sim.set("s00", Agent::Bad);
    sim.tick(10);
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    assert_eq!(sim.pinned_to_new(), Vec::<String>::new());
}

#[test]
fn max_concurrency_limits_sites_in_progress() {
    let mut r = request(vec![wave(Some("100%"), &[])]);
    r.max_concurrency = Some(2);
    let mut sim = Sim::new(&r, &fleet(5, 0));
    for id in ["s00", "s01", "s02", "s03", "s04"] {
        sim.set(id, Agent::Slow);
    }
    sim.tick(0);
    assert_eq!(sim.pinned_to_new(), vec!["s00", "s01"]);
    sim.tick(1);
    assert_eq!(sim.pinned_to_new().len(), 2);
    sim.set("s00", Agent::Good);
    sim.tick(2); // s00 Ready, frees a slot for s02
    assert_eq!(sim.pinned_to_new(), vec!["s00", "s01", "s02"]);
}

#[test]
fn max_failures_as_a_count() {
    let mut r = request(vec![wave(Some("100%"), &[])]);
    r.max_failures = Some(Amount::Count(1));
    r.max_failures_per_wave = Some(Amount::Count(1));
    let mut sim = Sim::new(&r, &fleet(5, 0));
    sim.set("s01", Agent::Bad);
    sim.tick(0);
    sim.tick(1);
    assert_eq!(sim.state("s01"), SiteState::Failed);
    assert_eq!(
        sim.rollout.phase,
        Phase::Succeeded,
        "one failure is tolerated"
    );
    let mut sim = Sim::new(&r, &fleet(5, 0));
    sim.set("s01", Agent::Bad);
    sim.set("s03", Agent::Bad);
    sim.tick(0);
    sim.tick(1);
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    let reason = sim.rollout.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("2 of 5 sites failed")
            && reason.contains("s03: apply failed: bad manifest"),
        "{reason}"
    );
    assert_eq!(sim.rollout.failures.len(), 2);
}

#[test]
fn max_failures_as_a_percent_per_wave_and_in_total() {
    let mut r = request(vec![wave(Some("100%"), &[])]);
    r.max_failures = Some(Amount::Percent(100));
    r.max_failures_per_wave = Some(Amount::Percent(20));
    let mut sim = Sim::new(&r, &fleet(10, 0));
    sim.set("s01", Agent::Bad);
    sim.set("s02", Agent::Bad);
    sim.tick(0);
    sim.tick(1);
    assert_eq!(sim.rollout.phase, Phase::Succeeded, "20% of 10 tolerates 2");
    let mut sim = Sim::new(&r, &fleet(10, 0));
    for id in ["s01", "s02", "s03"] {
        sim.set(id, Agent::Bad);
    }
    sim.tick(0);
    sim.tick(1);
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    assert!(sim
        .rollout
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("max_failures_per_wave = 20%"));
}

#[test]
fn the_progress_deadline_fails_a_site_that_never_gets_ready() {
    let mut sim = Sim::new(&request(vec![wave(Some("100%"), &[])]), &fleet(3, 0));
    sim.set("s02", Agent::Slow);
    sim.tick(0);
    sim.tick(1);
    sim.tick(60);
    assert_eq!(
        sim.state("s02"),
        SiteState::InProgress,
        "the deadline is not passed at 60 s"
    );
    sim.tick(61);
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    let error = sim.rollout.failures["s02"].clone();
    assert!(error.contains("progress deadline of 60s"), "{error}");
}

#[test]
fn an_offline_site_is_deferred_not_waited_for_and_catches_up() {
    let mut sim = Sim::new(
        &request(vec![wave(Some("1"), &[]), wave(Some("100%"), &[])]),
        &fleet(4, 0),
    );
    sim.set("s02", Agent::Offline);
    sim.tick(0);
    sim.tick(1);
    // Wave 2 reached s02 while it was offline: deferred, not pinned, and the wave passes without it.
    assert_eq!(sim.state("s02"), SiteState::Deferred);
    assert_eq!(
        sim.rollout.sites["s02"].deferred,
        Some(DeferReason::Offline)
    );
    assert!(!sim.pinned_to_new().contains(&"s02".to_owned()));
    sim.tick(2);
    assert_eq!(sim.rollout.phase, Phase::Succeeded);
    assert!(
        sim.rollout.is_active(),
        "a deferred site is still to be served"
    );
    // It comes back: pinned then, and Ready at its next heartbeat.
    sim.set("s02", Agent::Good);
    sim.tick(100);
    assert_eq!(sim.state("s02"), SiteState::InProgress);
    sim.tick(101);
    assert_eq!(sim.state("s02"), SiteState::Ready);
    assert!(!sim.rollout.is_active());
}

#[test]
fn a_site_that_goes_offline_before_receiving_is_deferred_and_unpinned() {
    let mut sim = Sim::new(&request(vec![wave(Some("100%"), &[])]), &fleet(3, 0));
    sim.tick(0);
    assert!(sim.pinned_to_new().contains(&"s01".to_owned()));
    // Pinned, but its heartbeats stop before one acknowledges the generation.
    sim.set("s01", Agent::Offline);
    let decisions = sim.tick(1);
    assert_eq!(sim.state("s01"), SiteState::Deferred);
    assert!(decisions.contains(&Decision::Pin {
        site: "s01".into(),
        commit: FROM.into()
    }));
    assert_eq!(sim.rollout.phase, Phase::Succeeded);
}

#[test]
fn a_site_that_goes_offline_after_receiving_counts_against_the_deadline() {
    let mut sim = Sim::new(&request(vec![wave(Some("100%"), &[])]), &fleet(3, 0));
    sim.set("s01", Agent::Slow);
    sim.tick(0);
    sim.tick(1); // s01 acknowledged the generation
    sim.set("s01", Agent::Offline);
    sim.tick(30);
    assert_eq!(
        sim.state("s01"),
        SiteState::InProgress,
        "not deferred: it received the commit"
    );
    sim.tick(61);
    assert!(sim.rollout.failures["s01"].contains("progress deadline"));
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    assert_eq!(sim.state("s01"), SiteState::RolledBack);
}

#[test]
fn a_site_outside_its_window_is_deferred_and_still_rolled_back() {
    let mut sim = Sim::new(
        &request(vec![wave(Some("2"), &[]), wave(Some("100%"), &[])]),
        &fleet(4, 0),
    );
    sim.set("s01", Agent::Window);
    sim.set("s02", Agent::Slow);
    sim.set("s03", Agent::Slow);
    sim.tick(0);
    sim.tick(1);
    assert_eq!(sim.state("s01"), SiteState::Deferred);
    assert_eq!(sim.rollout.sites["s01"].deferred, Some(DeferReason::Window));
    assert_eq!(
        sim.rollout.current_wave, 1,
        "the window does not hold the wave"
    );
    assert!(sim.pinned_to_new().contains(&"s03".to_owned()));
    // A failure in wave 2 rolls back every pinned site, the one waiting for its window too; the wait itself
    // never counted against the deadline.
    sim.set("s02", Agent::Good);
    sim.set("s03", Agent::Bad);
    sim.tick(50);
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    assert!(!sim.rollout.failures.contains_key("s01"));
    assert_eq!(sim.assigned["s01"].1, FROM);
    assert_eq!(sim.state("s01"), SiteState::RolledBack);
}

#[test]
fn a_bad_canary_is_rolled_back_and_later_waves_never_see_it() {
    let mut sim = Sim::new(
        &request(vec![
            wave(None, &[("ring", "canary")]),
            wave(Some("50%"), &[]),
            wave(Some("100%"), &[]),
        ]),
        &fleet(10, 1),
    );
    sim.set("s00", Agent::Bad);
    sim.tick(0);
    let decisions = sim.tick(1);
    assert_eq!(sim.rollout.phase, Phase::RolledBack);
    assert_eq!(
        decisions,
        vec![Decision::Pin {
            site: "s00".into(),
            commit: FROM.into()
        }]
    );
    let touched: Vec<&str> = sim.pins.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        touched,
        vec!["s00", "s00"],
        "only the canary was ever pinned"
    );
    assert_eq!(sim.rollout.failures["s00"], "apply failed: bad manifest");
    // Nothing moves after a rollback.
    assert!(sim.tick(2).is_empty());
    assert!(!sim.rollout.is_active());
}

#[test]
fn on_failure_pause_stops_without_repinning_and_resume_goes_on() {
    let mut r = request(vec![wave(Some("2"), &[]), wave(Some("100%"), &[])]);
    r.on_failure = OnFailure::Pause;
    let mut sim = Sim::new(&r, &fleet(4, 0));
    sim.set("s01", Agent::Bad);
    sim.tick(0);
    let decisions = sim.tick(1);
    assert_eq!(sim.rollout.phase, Phase::Paused);
    assert!(decisions.is_empty(), "{decisions:?}");
    assert_eq!(sim.pinned_to_new(), vec!["s00", "s01"]);
    // The operator fixes the site; resume goes on to the next wave.
    sim.set("s01", Agent::Good);
    sim.tick(2);
    assert_eq!(sim.state("s01"), SiteState::Ready);
    let mut rollout = sim.rollout.clone();
    resume(&mut rollout, "ops", 3000).unwrap();
    sim.rollout = rollout;
    sim.tick(3);
    assert_eq!(sim.pinned_to_new().len(), 4);
}

#[test]
fn the_operator_pauses_resumes_and_aborts() {
    let mut sim = Sim::new(
        &request(vec![wave(Some("1"), &[]), wave(Some("100%"), &[])]),
        &fleet(3, 0),
    );
    sim.tick(0);
    let mut rollout = sim.rollout.clone();
    pause(&mut rollout, "ops", 500).unwrap();
    assert!(pause(&mut rollout, "ops", 500).is_err());
    sim.rollout = rollout;
    sim.tick(1);
    assert_eq!(
        sim.state("s00"),
        SiteState::Ready,
        "a paused rollout still watches its sites"
    );
    assert_eq!(sim.pinned_to_new(), vec!["s00"], "but pins no one");
    let mut rollout = sim.rollout.clone();
    let decisions = abort(&mut rollout, "ops", 2000).unwrap();
    assert_eq!(
        decisions,
        vec![Decision::Pin {
            site: "s00".into(),
            commit: FROM.into()
        }]
    );
    assert_eq!(rollout.phase, Phase::Aborted);
    assert!(resume(&mut rollout, "ops", 2000).is_err());
}

#[test]
fn a_stored_rollout_resumes_where_it_was() {
    let mut sim = Sim::new(
        &request(vec![wave(Some("1"), &[]), wave(Some("100%"), &[])]),
        &fleet(4, 0),
    );
    sim.tick(0);
    sim.tick(1);
    // A hub restart: the record goes through its stored form, and the next step continues it.
    let stored = serde_json::to_vec(&sim.rollout).unwrap();
    let restored: Rollout = serde_json::from_slice(&stored).unwrap();
    assert_eq!(restored, sim.rollout);
    sim.rollout = restored;
    let decisions = sim.tick(2);
    assert_eq!(decisions, vec![Decision::Settle { commit: TO.into() }]);
    assert_eq!(sim.rollout.phase, Phase::Succeeded);
    let pins_of_s00 = sim.pins.iter().filter(|(_, s, _)| s == "s00").count();
    assert_eq!(pins_of_s00, 1);
}

#[test]
fn plans_are_checked() {
    let sites = fleet(3, 0);
    let shop = release(labels(&[("app", "shop")]));
    let mut r = request(vec![]);
    r.to_commit = "main".into();
    assert!(plan(&r, &shop, &sites, 0).is_err());
    let mut r = request(vec![]);
    r.to_commit = FROM.into();
    assert!(plan(&r, &shop, &sites, 0).is_err(), "already there");
    let nobody = release(labels(&[("app", "other")]));
    assert!(plan(&request(vec![]), &nobody, &sites, 0).is_err());
    let r = plan(&request(vec![]), &shop, &sites, 0).unwrap();
    assert_eq!(r.waves.len(), 1);
    assert_eq!(r.id, "shop-222222222222");
}

#[test]
fn per_site_values_come_from_the_sites_labels_and_id() {
    let mut source = release(labels(&[])).source;
    source.target = "directory:/srv/${agent_id}".into();
    source.vars = Some(BTreeMap::from([
        ("REGION".to_string(), "${label:region}".to_string()),
        ("SITE".to_string(), "shop-${agent_id}".to_string()),
        ("FIXED".to_string(), "1".to_string()),
    ]));
    let site = super::driver::pinned(&source, TO, "berlin-7", &labels(&[("region", "eu")]));
    assert_eq!(site.commit.as_deref(), Some(TO));
    assert_eq!(site.target, "directory:/srv/berlin-7");
    let vars = site.vars.unwrap();
    assert_eq!(vars["REGION"], "eu");
    assert_eq!(vars["SITE"], "shop-berlin-7");
    assert_eq!(vars["FIXED"], "1");
    // Without the label the variable is left out, so a `${REGION:=default}` in the manifests applies.
    let bare = super::driver::pinned(&source, TO, "oslo-1", &labels(&[]));
    assert!(!bare.vars.unwrap().contains_key("REGION"));
}
