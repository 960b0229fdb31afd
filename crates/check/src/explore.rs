//! Breadth-first search over worlds, the liveness analysis on the resulting graph, and the
//! report.

use crate::explain::explain;
use crate::timeline::replay;
use crate::world::{Action, Model, World};
use crate::{CheckError, Config, Counterexample, Property, PropertyResult, Report, Verdict};
use indexmap::IndexSet;
use std::time::Instant;
use tcpstate_fsm::State;

/// The first (so shortest) violating step found for a property: from state `from` by
/// `action`.
struct Found {
    from: u32,
    action: Action,
    finding: String,
}

/// The explored graph.
pub(crate) struct Graph {
    pub states: IndexSet<World>,
    /// For each state but the first: its BFS parent and the action from it.
    pub parent: Vec<(u32, Action)>,
    /// Successors in compressed rows: state i's are `succ[start[i]..start[i + 1]]`.
    start: Vec<u32>,
    succ: Vec<u32>,
    /// States with an execution cut by the in-flight bound.
    bounded: Vec<bool>,
}

impl Graph {
    /// The actions from the initial state to `state`.
    pub fn path_to(&self, mut state: u32) -> Vec<(u32, Action)> {
        let mut path = Vec::new();
        while state != 0 {
            let (p, a) = self.parent[state as usize - 1];
            path.push((p, a));
            state = p;
        }
        path.reverse();
        path
    }

    fn successors(&self, i: usize) -> &[u32] {
        &self.succ[self.start[i] as usize..self.start[i + 1] as usize]
    }
}

/// Explore every world reachable under `config` and decide each property.
pub fn check(config: &Config) -> Result<Report, CheckError> {
    config.validate()?;
    let started = Instant::now();
    let mut model = Model::new(config.clone());
    let init = model.initial(None);
    let mut graph = Graph {
        states: IndexSet::new(),
        parent: Vec::new(),
        start: vec![0],
        succ: Vec::new(),
        bounded: Vec::new(),
    };
    graph.states.insert(init);
    let mut found: Vec<Option<Found>> = Property::ALL.iter().map(|_| None).collect();
    let mut actions = Vec::new();
    let mut complete = true;
    let mut i = 0;
    while i < graph.states.len() {
        if graph.states.len() > config.max_states {
            complete = false;
            break;
        }
        let w = graph.states[i].clone();
        model.actions(&w, &mut actions);
        let mut bounded = false;
        for &action in &actions {
            let Ok((next, violations)) = model.apply(&w, action, None) else {
                bounded = true;
                continue;
            };
            for (property, finding) in violations {
                let slot = &mut found[property_index(property)];
                if slot.is_none() {
                    *slot = Some(Found {
                        from: i as u32,
                        action,
                        finding,
                    });
                }
            }
            let (j, new) = graph.states.insert_full(next);
            if new {
                graph.parent.push((i as u32, action));
            }
            graph.succ.push(j as u32);
        }
        graph.bounded.push(bounded);
        graph.start.push(graph.succ.len() as u32);
        i += 1;
    }
    let explored = i;

    let mut results = Vec::new();
    for property in Property::ALL {
        let verdict = if property.is_liveness() {
            if complete {
                match termination(&mut model, &graph) {
                    None => Verdict::Holds,
                    Some((path, lasso_from, finding)) => Verdict::Violated(Box::new(
                        counterexample(&mut model, &graph, property, &path, lasso_from, finding),
                    )),
                }
            } else {
                Verdict::Unknown(format!(
                    "the search stopped at {} states before finishing; liveness needs the whole graph",
                    config.max_states
                ))
            }
        } else if let Some(f) = &found[property_index(property)] {
            let mut path = graph.path_to(f.from);
            path.push((f.from, f.action));
            Verdict::Violated(Box::new(counterexample(
                &mut model,
                &graph,
                property,
                &path,
                None,
                f.finding.clone(),
            )))
        } else if complete {
            Verdict::Holds
        } else {
            Verdict::Unknown(format!(
                "no violation in the first {explored} states, but the search stopped at its limit"
            ))
        };
        results.push(PropertyResult {
            property,
            verdict,
            witness: None,
        });
    }
    // The CLOSE_WAIT lasso: when the server never closes, the termination counterexample
    // is the illustration of `close-wait-needs-close`.
    if !config.server_closes {
        let lasso = match &results[property_index(Property::Termination)].verdict {
            Verdict::Violated(c)
                if c.timeline.final_state(tcpstate_fsm::Side::B) == Some(State::CloseWait) =>
            {
                Some(c.clone())
            }
            _ => None,
        };
        results[property_index(Property::CloseWaitNeedsClose)].witness = lasso;
    }

    Ok(Report {
        config: config.clone(),
        states: graph.states.len(),
        transitions: graph.succ.len(),
        connection_states: model.interner.len(),
        bounded_states: graph.bounded.iter().filter(|b| **b).count(),
        complete,
        elapsed: started.elapsed(),
        results,
    })
}

fn property_index(p: Property) -> usize {
    Property::ALL.iter().position(|&q| q == p).expect("listed")
}

fn counterexample(
    model: &mut Model,
    graph: &Graph,
    property: Property,
    path: &[(u32, Action)],
    lasso_from: Option<usize>,
    finding: String,
) -> Counterexample {
    let timeline = replay(model, graph, property, path, lasso_from, &finding);
    Counterexample {
        explanation: explain(property, &model.cfg, &finding),
        finding,
        steps: path.len(),
        lasso_from,
        timeline,
    }
}

/// A liveness counterexample: the path, the step it repeats from, the finding.
type Lasso = (Vec<(u32, Action)>, Option<usize>, String);

/// A clean end: the client closed, the server listening, nothing in flight, nothing left
/// to do.
fn clean(model: &Model, w: &World) -> bool {
    w.net.is_empty()
        && model.interner.get(w.conns[0]).state() == State::Closed
        && model.interner.get(w.conns[1]).state() == State::Listen
}

/// `termination`: from every reachable state a clean end must stay reachable. States
/// whose executions were cut by the in-flight bound count as able to end (optimistic:
/// the bound, not the protocol, stopped them). Returns the path to the first (shallowest)
/// doomed state followed by a walk to where it is stuck or starts repeating.
fn termination(model: &mut Model, graph: &Graph) -> Option<Lasso> {
    let n = graph.states.len();
    // Reverse edges.
    let mut rstart = vec![0u32; n + 1];
    for &t in &graph.succ {
        rstart[t as usize + 1] += 1;
    }
    for k in 0..n {
        rstart[k + 1] += rstart[k];
    }
    let mut fill = rstart.clone();
    let mut rsucc = vec![0u32; graph.succ.len()];
    for s in 0..n {
        for &t in graph.successors(s) {
            rsucc[fill[t as usize] as usize] = s as u32;
            fill[t as usize] += 1;
        }
    }
    let mut ok = vec![false; n];
    let mut queue = Vec::new();
    for (s, ok_s) in ok.iter_mut().enumerate() {
        let w = &graph.states[s];
        let ends = graph.successors(s).is_empty() && clean(model, w);
        if ends || graph.bounded[s] {
            *ok_s = true;
            queue.push(s as u32);
        }
    }
    while let Some(t) = queue.pop() {
        let t = t as usize;
        for &s in &rsucc[rstart[t] as usize..rstart[t + 1] as usize] {
            if !ok[s as usize] {
                ok[s as usize] = true;
                queue.push(s);
            }
        }
    }
    let doomed = (0..n).find(|&s| !ok[s])?;
    let mut path = graph.path_to(doomed as u32);
    let prefix = path.len();
    // Walk on from the doomed state (always the first possible action) until stuck or
    // repeating. Re-applying an action reproduces the successor the search stored.
    let mut seen = vec![doomed as u32];
    let mut at = doomed;
    let mut lasso_from = None;
    let mut acts = Vec::new();
    let stuck;
    loop {
        let w = graph.states[at].clone();
        model.actions(&w, &mut acts);
        let step = acts.iter().find_map(|&a| {
            let (next, _) = model.apply(&w, a, None).ok()?;
            Some((a, graph.states.get_index_of(&next)? as u32))
        });
        let Some((action, next)) = step else {
            stuck = true;
            break;
        };
        path.push((at as u32, action));
        if let Some(pos) = seen.iter().position(|&x| x == next) {
            lasso_from = Some(prefix + pos + 1);
            stuck = false;
            break;
        }
        seen.push(next);
        at = next as usize;
        if seen.len() > 200 {
            stuck = false;
            break;
        }
    }
    let end = &graph.states[*seen.last().expect("non-empty") as usize];
    let a = model.interner.get(end.conns[0]).state();
    let b = model.interner.get(end.conns[1]).state();
    let finding = if stuck {
        format!(
            "the run is stuck with A in {a}, B in {b} and {} segment(s) in flight: no step is possible and the connection never ends",
            end.net.len()
        )
    } else {
        format!("from step {} the run can only repeat itself (A in {a}, B in {b}): a clean end is no longer reachable", lasso_from.unwrap_or(prefix + 1))
    };
    if stuck {
        lasso_from = Some(path.len());
    }
    Some((path, lasso_from, finding))
}
