//! The built-in SVG layout of the state diagram, for machines without Graphviz.
//!
//! Fixed coordinates, arranged like RFC 9293 Figure 5 on a three-column grid (active closer
//! left, CLOSED / LISTEN / ESTABLISHED / CLOSING / TIME-WAIT in the centre, the passive
//! closer right). Edges are straight between box borders, bent into curves where two or
//! more run between the same boxes; each label is placed at the first of several candidate
//! positions along its edge that overlaps no box and no label placed before it. The text is
//! monospaced so that its width, and therefore every overlap test, is exact.

use super::{Diagram, Edge, Node, Side};
use crate::xml::escape;
use std::fmt::Write;
use tcpstate_fsm::State;

/// Width of one character of the 10 px monospace font (0.6 em, with a margin).
const CHAR_W: f64 = 6.1;
/// Height of one text line.
const LINE_H: f64 = 12.0;
/// A main state box.
const BOX_W: f64 = 132.0;
const BOX_H: f64 = 36.0;
/// Space between a state and its small CLOSED box.
const BESIDE_GAP: f64 = 46.0;
/// Vertical distance between the figure's rows.
const ROW_GAP: f64 = 132.0;
/// Horizontal distance left column to centre, and centre to right column.
const COL_GAP_LEFT: f64 = 330.0;
const COL_GAP_RIGHT: f64 = 470.0;
const MARGIN: f64 = 16.0;
/// The first row's centre (below the title).
const TOP: f64 = 70.0;
/// Distance between parallel edges joining the same two boxes.
const PARALLEL_GAP: f64 = 30.0;

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn centred(cx: f64, cy: f64, w: f64, h: f64) -> Rect {
        Rect {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            w,
            h,
        }
    }

    fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }

    fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }

    fn right(&self) -> f64 {
        self.x + self.w
    }

    fn bottom(&self) -> f64 {
        self.y + self.h
    }

    /// Whether the interiors intersect (touching edges do not count).
    pub(crate) fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }

    fn contains(&self, p: (f64, f64)) -> bool {
        p.0 > self.x && p.0 < self.right() && p.1 > self.y && p.1 < self.bottom()
    }

    fn grow(&self, by: f64) -> Rect {
        Rect {
            x: self.x - by,
            y: self.y - by,
            w: self.w + 2.0 * by,
            h: self.h + 2.0 * by,
        }
    }

    /// Where the ray from the centre towards `to` leaves the rectangle.
    fn border_towards(&self, to: (f64, f64)) -> (f64, f64) {
        let (cx, cy) = (self.cx(), self.cy());
        let (dx, dy) = (to.0 - cx, to.1 - cy);
        if dx == 0.0 && dy == 0.0 {
            return (cx, cy);
        }
        let sx = if dx != 0.0 {
            (self.w / 2.0) / dx.abs()
        } else {
            f64::INFINITY
        };
        let sy = if dy != 0.0 {
            (self.h / 2.0) / dy.abs()
        } else {
            f64::INFINITY
        };
        let s = sx.min(sy);
        (cx + dx * s, cy + dy * s)
    }
}

/// Width of a text in the monospace font.
fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// One drawn edge: its path and, for edges between main boxes, its label.
#[derive(Debug, Clone)]
pub(crate) struct PlacedEdge {
    pub edge: Edge,
    /// Points of the path: start, control point(s), end (2 = line, 3 = quadratic curve,
    /// 4 = cubic curve, more = a polyline with rounded corners).
    pub points: Vec<(f64, f64)>,
    /// The label box (None for edges into a small CLOSED box, labelled inside it).
    pub label: Option<Rect>,
}

/// A small CLOSED box: its rectangle and, per edge, the rectangle of its label lines.
#[derive(Debug, Clone)]
pub(crate) struct BesideBox {
    pub node: Node,
    pub rect: Rect,
    pub rows: Vec<(Edge, Rect)>,
}

/// The computed figure.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub width: f64,
    pub height: f64,
    /// Main boxes.
    pub boxes: Vec<(Node, Rect)>,
    pub beside: Vec<BesideBox>,
    pub edges: Vec<PlacedEdge>,
    /// Where the legend is drawn.
    pub legend: Rect,
}

impl Layout {
    /// Every box a label must keep clear of: main boxes and small CLOSED boxes.
    pub(crate) fn node_rects(&self) -> Vec<(Node, Rect)> {
        let mut v = self.boxes.clone();
        v.extend(self.beside.iter().map(|b| (b.node, b.rect)));
        v
    }

    fn rect_of(&self, node: Node) -> Rect {
        self.node_rects()
            .into_iter()
            .find(|(n, _)| *n == node)
            .map(|(_, r)| r)
            .expect("every node has a box")
    }
}

/// Grid position (column -1 = left, 0 = centre, 1 = right; row 0..6) of the main boxes.
fn grid(node: Node) -> (i32, i32) {
    match node {
        Node::State(State::Closed) => (0, 0),
        Node::State(State::Listen) => (0, 1),
        Node::State(State::SynReceived) => (-1, 2),
        Node::State(State::SynSent) => (1, 2),
        Node::State(State::Established) => (0, 3),
        Node::State(State::FinWait1) => (-1, 4),
        Node::State(State::CloseWait) => (1, 4),
        Node::State(State::FinWait2) => (-1, 5),
        Node::State(State::Closing) => (0, 5),
        Node::State(State::LastAck) => (1, 5),
        Node::State(State::TimeWait) => (0, 6),
        Node::ClosedEnd => (1, 6),
        Node::ClosedBeside(s) => grid(Node::State(s)),
    }
}

/// Whether a state's small CLOSED box sits on its left.
fn beside_is_left(state: State) -> bool {
    matches!(
        state,
        State::SynReceived | State::FinWait1 | State::FinWait2 | State::TimeWait
    )
}

/// The label lines of the small CLOSED box beside `state`, per edge.
fn beside_edges(d: &Diagram, state: State) -> Vec<&Edge> {
    d.edges
        .iter()
        .filter(|e| e.to == Node::ClosedBeside(state))
        .collect()
}

const BESIDE_HEAD: f64 = 18.0;
const BESIDE_PAD: f64 = 5.0;
const BESIDE_ROW_GAP: f64 = 4.0;

fn beside_size(d: &Diagram, state: State) -> (f64, f64) {
    let edges = beside_edges(d, state);
    let mut w = text_w(d.node_label(Node::ClosedBeside(state)));
    let mut h = BESIDE_HEAD + BESIDE_PAD;
    for (i, e) in edges.iter().enumerate() {
        for l in e.label_lines() {
            w = w.max(text_w(&l));
        }
        h += e.rows.len() as f64 * LINE_H;
        if i + 1 < edges.len() {
            h += BESIDE_ROW_GAP;
        }
    }
    (w + 2.0 * BESIDE_PAD, h + BESIDE_PAD)
}

/// Compute the figure.
pub(crate) fn layout(d: &Diagram) -> Layout {
    let nodes = d.nodes();
    let beside_states: Vec<State> = nodes
        .iter()
        .filter_map(|n| match n {
            Node::ClosedBeside(s) => Some(*s),
            _ => None,
        })
        .collect();
    // The left column must leave room for the widest small box on its left.
    let left_beside_w = beside_states
        .iter()
        .filter(|s| grid(Node::State(**s)).0 == -1)
        .map(|s| beside_size(d, *s).0)
        .fold(0.0, f64::max);
    // Room on the far left for TIME-WAIT's way back to SYN-RECEIVED (Linux).
    let back_lane = 24.0;
    let x_left = MARGIN + back_lane + left_beside_w + BESIDE_GAP + BOX_W / 2.0;
    let col_x = |c: i32| match c {
        -1 => x_left,
        0 => x_left + COL_GAP_LEFT,
        _ => x_left + COL_GAP_LEFT + COL_GAP_RIGHT,
    };
    let row_y = |r: i32| TOP + f64::from(r) * ROW_GAP;

    let mut boxes = Vec::new();
    for n in Node::MAIN {
        let (c, r) = grid(n);
        boxes.push((n, Rect::centred(col_x(c), row_y(r), BOX_W, BOX_H)));
    }
    let main_rect = |n: Node| -> Rect {
        boxes
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, r)| *r)
            .expect("main box")
    };

    let mut beside = Vec::new();
    for s in &beside_states {
        let (w, h) = beside_size(d, *s);
        let owner = main_rect(Node::State(*s));
        let x = if beside_is_left(*s) {
            owner.x - BESIDE_GAP - w
        } else {
            owner.right() + BESIDE_GAP
        };
        let rect = Rect {
            x,
            y: owner.cy() - h / 2.0,
            w,
            h,
        };
        let mut rows = Vec::new();
        let mut y = rect.y + BESIDE_HEAD + BESIDE_PAD;
        for e in beside_edges(d, *s) {
            let rh = e.rows.len() as f64 * LINE_H;
            rows.push((
                e.clone(),
                Rect {
                    x: rect.x + BESIDE_PAD,
                    y,
                    w: w - 2.0 * BESIDE_PAD,
                    h: rh,
                },
            ));
            y += rh + BESIDE_ROW_GAP;
        }
        beside.push(BesideBox {
            node: Node::ClosedBeside(*s),
            rect,
            rows,
        });
    }

    let mut layout = Layout {
        width: 0.0,
        height: 0.0,
        boxes,
        beside,
        edges: Vec::new(),
        legend: Rect {
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: 0.0,
        },
    };
    route_edges(d, &mut layout, MARGIN + 6.0);

    // Canvas: everything drawn so far, then the legend below it.
    let mut right: f64 = 0.0;
    let mut bottom: f64 = 0.0;
    for (_, r) in layout.node_rects() {
        right = right.max(r.right());
        bottom = bottom.max(r.bottom());
    }
    for e in &layout.edges {
        if let Some(l) = e.label {
            right = right.max(l.right());
            bottom = bottom.max(l.bottom());
        }
        for p in &e.points {
            bottom = bottom.max(p.1);
        }
    }
    let legend_lines = legend_lines(d);
    let legend_w = legend_lines
        .iter()
        .map(|(_, t)| text_w(t) + 30.0)
        .fold(0.0, f64::max);
    layout.legend = Rect {
        x: MARGIN,
        y: bottom + 24.0,
        w: legend_w,
        h: legend_lines.len() as f64 * (LINE_H + 3.0),
    };
    layout.width = (right.max(layout.legend.right()) + MARGIN).ceil();
    layout.height = (layout.legend.bottom() + MARGIN).ceil();
    layout
}

/// Lay out every edge; `lane_x` is the far-left lane for long edges back up the figure.
fn route_edges(d: &Diagram, layout: &mut Layout, lane_x: f64) {
    // Label placement keeps clear of every box and of the labels placed before.
    let obstacles: Vec<Rect> = layout
        .node_rects()
        .iter()
        .map(|(_, r)| r.grow(3.0))
        .collect();
    let mut placed: Vec<Rect> = Vec::new();
    let mut edges = Vec::new();

    for edge in &d.edges {
        if let Node::ClosedBeside(of) = edge.to {
            // A short curve from the state's side to the row holding its label.
            let owner = layout.rect_of(Node::State(of));
            let bb = layout
                .beside
                .iter()
                .find(|b| b.node == edge.to)
                .expect("beside box");
            let row = bb
                .rows
                .iter()
                .find(|(e, _)| e == edge)
                .map(|(_, r)| *r)
                .expect("beside row");
            let (start, end) = if beside_is_left(of) {
                ((owner.x, owner.cy()), (bb.rect.right(), row.cy()))
            } else {
                ((owner.right(), owner.cy()), (bb.rect.x, row.cy()))
            };
            let mid = (start.0 + end.0) / 2.0;
            edges.push(PlacedEdge {
                edge: edge.clone(),
                points: vec![start, (mid, start.1), (mid, end.1), end],
                label: None,
            });
            continue;
        }

        let from = layout.rect_of(edge.from);
        let to = layout.rect_of(edge.to);
        let lines = edge.label_lines();
        let lw = lines.iter().map(|l| text_w(l)).fold(0.0, f64::max) + 4.0;
        let lh = lines.len() as f64 * LINE_H + 2.0;

        let (gf, gt) = (grid(edge.from), grid(edge.to));
        if gt.1 < gf.1 - 2 {
            // A long way back up (TIME-WAIT -> SYN-RECEIVED): down, along the bottom, up
            // the far-left lane and in from above, so it crosses nothing.
            let low = from.bottom() + 26.0;
            // Above the target and above anything beside it in its row.
            let row_top = layout
                .node_rects()
                .iter()
                .filter(|(_, r)| r.bottom() > to.y && r.y < to.bottom())
                .map(|(_, r)| r.y)
                .fold(to.y, f64::min);
            let high = row_top - 16.0;
            let points = vec![
                (from.cx() - 20.0, from.bottom()),
                (from.cx() - 20.0, low),
                (lane_x, low),
                (lane_x, high),
                (to.cx() - 20.0, high),
                (to.cx() - 20.0, to.y),
            ];
            let label = place_label(
                &[Rect {
                    x: lane_x + 8.0,
                    y: low + 3.0,
                    w: lw,
                    h: lh,
                }],
                &obstacles,
                &placed,
            );
            placed.push(label);
            edges.push(PlacedEdge {
                edge: edge.clone(),
                points,
                label: Some(label),
            });
            continue;
        }

        // Parallel edges between the same two boxes (either direction) fan out.
        let (a, b) = if edge.from <= edge.to {
            (edge.from, edge.to)
        } else {
            (edge.to, edge.from)
        };
        let siblings: Vec<&Edge> = d
            .edges
            .iter()
            .filter(|e| (e.from == a && e.to == b) || (e.from == b && e.to == a))
            .collect();
        let k = siblings.iter().position(|e| *e == edge).unwrap_or(0) as f64;
        let n = siblings.len() as f64;
        let offset = (k - (n - 1.0) / 2.0) * PARALLEL_GAP;

        let ra = layout.rect_of(a);
        let rb = layout.rect_of(b);
        // Unit normal of the a -> b direction (the same for both directions of travel).
        let (dx, dy) = (rb.cx() - ra.cx(), rb.cy() - ra.cy());
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (nx, ny) = (-dy / len, dx / len);
        // The straight line (or the fanned-out curve) unless it passes through a box; then
        // the first of a few bends that does not: elbows, wider fans.
        let mid = ((from.cx() + to.cx()) / 2.0, (from.cy() + to.cy()) / 2.0);
        let mut controls: Vec<Option<(f64, f64)>> = Vec::new();
        if offset == 0.0 {
            controls.push(None);
            controls.push(Some((to.cx(), from.cy())));
            controls.push(Some((from.cx(), to.cy())));
        }
        for m in [2.0, 3.0, 4.5] {
            let o = if offset == 0.0 { PARALLEL_GAP } else { offset };
            controls.push(Some((mid.0 + nx * o * m, mid.1 + ny * o * m)));
            if offset == 0.0 {
                controls.push(Some((mid.0 - nx * o * m, mid.1 - ny * o * m)));
            }
        }
        let others: Vec<Rect> = layout
            .node_rects()
            .iter()
            .filter(|(n, _)| *n != edge.from && *n != edge.to)
            .map(|(_, r)| r.grow(2.0))
            .collect();
        let path_for = |c: Option<(f64, f64)>| -> Vec<(f64, f64)> {
            match c {
                None => vec![
                    from.border_towards((to.cx(), to.cy())),
                    to.border_towards((from.cx(), from.cy())),
                ],
                Some(c) => vec![from.border_towards(c), c, to.border_towards(c)],
            }
        };
        let clear = |pts: &Vec<(f64, f64)>| {
            curve_samples(pts)
                .iter()
                .all(|p| others.iter().all(|r| !r.contains(*p)))
        };
        let points = controls
            .iter()
            .map(|c| path_for(*c))
            .find(clear)
            .unwrap_or_else(|| path_for(controls[0]));

        // Candidates: beside points along the path, on the side the edge bends to first.
        let side = if offset < 0.0 { -1.0 } else { 1.0 };
        let mut candidates = Vec::new();
        for t in [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8] {
            let p = point_on(&points, t);
            for s in [side, -side] {
                candidates.push(label_beside(p, (nx * s, ny * s), lw, lh));
            }
        }
        let label = place_label(&candidates, &obstacles, &placed);
        placed.push(label);
        edges.push(PlacedEdge {
            edge: edge.clone(),
            points,
            label: Some(label),
        });
    }
    layout.edges = edges;
}

/// The point at parameter t of a line or quadratic curve.
fn point_on(points: &[(f64, f64)], t: f64) -> (f64, f64) {
    match points {
        [a, b] => (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t),
        [a, c, b] => {
            let u = 1.0 - t;
            (
                u * u * a.0 + 2.0 * u * t * c.0 + t * t * b.0,
                u * u * a.1 + 2.0 * u * t * c.1 + t * t * b.1,
            )
        }
        _ => points[0],
    }
}

/// A label box next to point p, on the side given by the unit normal n: its nearest corner
/// or edge midpoint 6 px from p.
fn label_beside(p: (f64, f64), n: (f64, f64), w: f64, h: f64) -> Rect {
    let gap = 6.0;
    let x = if n.0 > 0.3 {
        p.0 + gap
    } else if n.0 < -0.3 {
        p.0 - gap - w
    } else {
        p.0 - w / 2.0
    };
    let y = if n.1 > 0.3 {
        p.1 + gap
    } else if n.1 < -0.3 {
        p.1 - gap - h
    } else {
        p.1 - h / 2.0
    };
    Rect { x, y, w, h }
}

/// The first candidate that overlaps no obstacle and no placed label; failing that, the
/// candidate with the fewest overlaps (the layout test would then fail and say so).
fn place_label(candidates: &[Rect], obstacles: &[Rect], placed: &[Rect]) -> Rect {
    let cost = |r: &Rect| {
        obstacles.iter().filter(|o| o.overlaps(r)).count() * 10
            + placed.iter().filter(|o| o.grow(2.0).overlaps(r)).count()
            + usize::from(r.x < 0.0 || r.y < 0.0) * 100
    };
    candidates
        .iter()
        .copied()
        .min_by_key(cost)
        .expect("at least one candidate")
}

fn legend_lines(d: &Diagram) -> Vec<(Option<Side>, String)> {
    let mut v: Vec<(Option<Side>, String)> = d
        .sides()
        .into_iter()
        .map(|s| (Some(s), s.legend().to_string()))
        .collect();
    let mut styles = "bold: the normal open and close; thin: everything else".to_string();
    if d.has_linux_only() {
        styles.push_str("; dashed (in the small boxes: italic): Linux only");
    }
    v.push((None, styles));
    v.push((
        None,
        "labels: event [condition] / what is sent; the small CLOSED boxes are the one \
         state CLOSED, each arrow's label written in the row it points at"
            .to_string(),
    ));
    v
}

fn marker_id(side: Side) -> &'static str {
    match side {
        Side::Active => "arrow-active",
        Side::Passive => "arrow-passive",
        Side::Simultaneous => "arrow-simultaneous",
        Side::Abort => "arrow-abort",
        Side::Timeout => "arrow-timeout",
    }
}

fn path_data(points: &[(f64, f64)]) -> String {
    let f = |p: (f64, f64)| format!("{:.1},{:.1}", p.0, p.1);
    match points {
        [a, b] => format!("M{} L{}", f(*a), f(*b)),
        [a, c, b] => format!("M{} Q{} {}", f(*a), f(*c), f(*b)),
        [a, c1, c2, b] => format!("M{} C{} {} {}", f(*a), f(*c1), f(*c2), f(*b)),
        _ => {
            let mut s = format!("M{}", f(points[0]));
            for p in &points[1..] {
                let _ = write!(s, " L{}", f(*p));
            }
            s
        }
    }
}

/// The SVG document.
pub(super) fn render(d: &Diagram) -> String {
    let l = layout(d);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" \
         font-size=\"10\">",
        w = l.width,
        h = l.height
    );
    let _ = writeln!(
        s,
        "<!-- {}: built-in layout of tcpstate-draw (Graphviz not used) -->",
        escape(&d.title())
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&d.title()));
    s.push_str("<defs>\n");
    for side in Side::ALL {
        let _ = writeln!(
            s,
            "<marker id=\"{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
             markerHeight=\"7\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            marker_id(side),
            side.colour()
        );
    }
    s.push_str("</defs>\n");
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        l.width, l.height
    );
    let _ = writeln!(
        s,
        "<text x=\"{MARGIN}\" y=\"24\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        escape(&d.title())
    );

    // Edges first, boxes and labels over them.
    for pe in &l.edges {
        let e = &pe.edge;
        let width = if e.normal { 2.6 } else { 1.1 };
        let dash = if e.linux_only {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<path id=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\"{dash} \
             marker-end=\"url(#{})\"><title>{}</title></path>",
            escape(&e.id()),
            path_data(&pe.points),
            e.side.colour(),
            marker_id(e.side),
            escape(&e.sources())
        );
    }
    for (node, r) in &l.boxes {
        let _ = writeln!(
            s,
            "<g id=\"{}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"9\" \
             fill=\"#f4f4f4\" stroke=\"#333333\" stroke-width=\"1.4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" \
             font-weight=\"bold\">{}</text></g>",
            node.id(),
            r.x,
            r.y,
            r.w,
            r.h,
            r.cx(),
            r.cy() + 4.0,
            escape(d.node_label(*node))
        );
    }
    for b in &l.beside {
        let r = b.rect;
        let _ = write!(
            s,
            "<g id=\"{}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"6\" \
             fill=\"#ffffff\" stroke=\"#888888\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\" \
             fill=\"#444444\">{}</text>\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888888\"/>",
            b.node.id(),
            r.x,
            r.y,
            r.w,
            r.h,
            r.cx(),
            r.y + 13.0,
            escape(d.node_label(b.node)),
            r.x,
            r.y + BESIDE_HEAD,
            r.right(),
            r.y + BESIDE_HEAD
        );
        for (e, row) in &b.rows {
            text_lines(&mut s, e, row);
        }
        s.push_str("</g>\n");
    }
    for pe in &l.edges {
        if let Some(r) = pe.label {
            text_lines(&mut s, &pe.edge, &r);
        }
    }

    // Legend.
    let mut y = l.legend.y;
    for (side, text) in legend_lines(d) {
        if let Some(side) = side {
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
                 stroke-width=\"4\"/>",
                l.legend.x,
                y + 7.0,
                l.legend.x + 22.0,
                y + 7.0,
                side.colour()
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\">{}</text>",
            l.legend.x + 30.0,
            y + 10.0,
            side.map_or("#222222", Side::colour),
            escape(&text)
        );
        y += LINE_H + 3.0;
    }
    s.push_str("</svg>\n");
    s
}

/// An edge's label lines, left-aligned in `r`, in the edge's colour (italic when Linux-only).
fn text_lines(s: &mut String, e: &Edge, r: &Rect) {
    let style = if e.linux_only {
        " font-style=\"italic\""
    } else {
        ""
    };
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\"{style}>",
        r.x + 2.0,
        r.y,
        e.side.colour()
    );
    for (i, line) in e.label_lines().iter().enumerate() {
        let _ = write!(
            s,
            "<tspan x=\"{:.1}\" y=\"{:.1}\">{}</tspan>",
            r.x + 2.0,
            r.y + 9.5 + i as f64 * LINE_H,
            escape(line)
        );
    }
    s.push_str("</text>\n");
}

/// Points sampled along a drawn path (which boxes an edge passes through).
fn curve_samples(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    match points.len() {
        2 | 3 => {
            for i in 0..=100 {
                out.push(point_on(points, f64::from(i) / 100.0));
            }
        }
        4 => {
            let [a, c1, c2, b] = [points[0], points[1], points[2], points[3]];
            for i in 0..=100 {
                let t = f64::from(i) / 100.0;
                let u = 1.0 - t;
                let w = [u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t];
                out.push((
                    w[0] * a.0 + w[1] * c1.0 + w[2] * c2.0 + w[3] * b.0,
                    w[0] * a.1 + w[1] * c1.1 + w[2] * c2.1 + w[3] * b.1,
                ));
            }
        }
        _ => {
            for pair in points.windows(2) {
                for i in 0..=50 {
                    out.push(point_on(pair, f64::from(i) / 50.0));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiagramProfile;

    fn both() -> [Layout; 2] {
        [
            layout(&Diagram::new(DiagramProfile::Linux)),
            layout(&Diagram::new(DiagramProfile::Rfc)),
        ]
    }

    #[test]
    fn no_two_boxes_overlap() {
        for l in both() {
            let rects = l.node_rects();
            for (i, (a, ra)) in rects.iter().enumerate() {
                for (b, rb) in &rects[i + 1..] {
                    assert!(!ra.grow(4.0).overlaps(rb), "{a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn no_label_overlaps_a_box_or_another_label() {
        for l in both() {
            let rects = l.node_rects();
            let labels: Vec<(&Edge, Rect)> = l
                .edges
                .iter()
                .filter_map(|e| e.label.map(|r| (&e.edge, r)))
                .collect();
            for (e, r) in &labels {
                for (n, b) in &rects {
                    assert!(!r.overlaps(b), "label of {} overlaps box {n:?}", e.id());
                }
                assert!(
                    r.x >= 0.0 && r.y >= 0.0 && r.right() <= l.width,
                    "{}",
                    e.id()
                );
                assert!(
                    !r.overlaps(&l.legend),
                    "label of {} overlaps the legend",
                    e.id()
                );
            }
            for (i, (a, ra)) in labels.iter().enumerate() {
                for (b, rb) in &labels[i + 1..] {
                    assert!(
                        !ra.overlaps(rb),
                        "labels of {} and {} overlap",
                        a.id(),
                        b.id()
                    );
                }
            }
        }
    }

    #[test]
    fn edges_cross_no_box_but_their_own() {
        for l in both() {
            let rects = l.node_rects();
            for pe in &l.edges {
                for (n, r) in &rects {
                    if *n == pe.edge.from || *n == pe.edge.to {
                        continue;
                    }
                    let hit = curve_samples(&pe.points)
                        .into_iter()
                        .find(|p| r.contains(*p));
                    assert!(
                        hit.is_none(),
                        "{} passes through {n:?} at {hit:?}",
                        pe.edge.id()
                    );
                }
            }
        }
    }

    #[test]
    fn every_edge_is_drawn_and_labelled_once() {
        for l in both() {
            let in_boxes: usize = l.beside.iter().map(|b| b.rows.len()).sum();
            let labelled = l.edges.iter().filter(|e| e.label.is_some()).count();
            assert_eq!(in_boxes + labelled, l.edges.len());
        }
    }
}
