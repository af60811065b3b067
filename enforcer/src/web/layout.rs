//! The zone map's layout: zones grouped by namespace, each group a box with its zones
//! on a grid and the space of their labels reserved, so that no two circles and no
//! two labels overlap, however many zones a group has. Pure and deterministic: the
//! same zones give the same positions, so the map stands still between refreshes.
//!
//! Positions are relative to the group's box; the page packs the boxes (an expanded
//! group's `width`×`height`, a collapsed one's `collapsed_width`×`collapsed_height`)
//! in rows, which cannot overlap either. Text widths are estimated generously from
//! the number of characters; labels are cut to [`LABEL_CHARS`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::map::MapZone;

/// The group of `host`, `world` and the CIDR zones (no namespace can be named so).
pub const BUILTIN_GROUP: &str = "(built-in)";
/// The group of plain zone names without a namespace.
pub const PLAIN_GROUP: &str = "(no namespace)";
/// Longer labels are cut with `…` (the full name is in the tooltip and the panel).
pub const LABEL_CHARS: usize = 24;

/// Estimated widths of one character of a name (12.5px, bold) and of the line under it.
const NAME_CHAR_W: i32 = 8;
const SUB_CHAR_W: i32 = 7;
/// Circle bottom to label top, the two label lines, and the space between cells.
const LABEL_GAP: i32 = 10;
const LABEL_H: i32 = 32;
const CELL_GAP: i32 = 20;
/// The quarantine ring around a circle (radius + 6, stroke 4).
const RING: i32 = 8;
const PAD: i32 = 16;
/// The group's title line.
const HEADER: i32 = 34;
const HEADER_CHAR_W: i32 = 8;

/// One namespace (or the built-in zones) as a box on the map.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MapGroup {
    pub name: String,
    pub builtin: bool,
    pub zones: usize,
    /// Zones quarantined, or with quarantined members.
    pub quarantined: usize,
    /// The weakest mode of its zones (`learn` < `monitor` < `enforce`).
    pub mode: String,
    /// The title of the expanded box and the label of the collapsed node.
    pub label: String,
    /// The collapsed node's second line: `40 zones · 2 quarantined`.
    pub sublabel: String,
    pub width: i32,
    pub height: i32,
    pub collapsed_width: i32,
    pub collapsed_height: i32,
    /// The collapsed node: its center in the collapsed box, and its radius.
    pub cx: i32,
    pub cy: i32,
    pub r: i32,
}

/// The group a zone belongs to.
pub fn group_of(zone: &MapZone) -> String {
    if zone.builtin {
        return BUILTIN_GROUP.to_owned();
    }
    match zone.zone.split_once('/') {
        Some((namespace, _)) => namespace.to_owned(),
        None => PLAIN_GROUP.to_owned(),
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(LABEL_CHARS - 1).collect();
    short.push('…');
    short
}

fn chars(text: &str) -> i32 {
    i32::try_from(text.chars().count()).unwrap_or(i32::MAX / 16)
}

/// Label and second line of a zone: the name within its namespace, and its mode.
fn zone_labels(zone: &MapZone) -> (String, String) {
    let name = match zone.zone.split_once('/') {
        Some((_, name)) if !zone.builtin => name,
        _ => zone.zone.as_str(),
    };
    let mut sub = if zone.builtin {
        "built-in".to_owned()
    } else {
        zone.mode.clone()
    };
    if zone.quarantined {
        sub.push_str(" · quarantined");
    } else if zone.quarantined_members > 0 {
        sub.push_str(&format!(" · {} quarantined", zone.quarantined_members));
    }
    (cut(name), sub)
}

fn label_width(label: &str, sub: &str) -> i32 {
    (chars(label) * NAME_CHAR_W).max(chars(sub) * SUB_CHAR_W)
}

/// A zone's radius grows with its members, up to a cap.
fn zone_radius(members: usize) -> i32 {
    let r = 24.0 + 5.0 * (members as f64).sqrt();
    r.min(44.0).round() as i32
}

fn mode_rank(mode: &str) -> u8 {
    match mode {
        "enforce" => 2,
        "monitor" => 1,
        _ => 0,
    }
}

/// Places every zone in its group (setting `group`, `label`, `sublabel`, `x`, `y`,
/// `r`) and returns the groups: the built-in one first, then by name.
pub fn lay_out(zones: &mut [MapZone]) -> Vec<MapGroup> {
    let mut by_group: BTreeMap<(bool, String), Vec<usize>> = BTreeMap::new();
    for (i, zone) in zones.iter_mut().enumerate() {
        zone.group = group_of(zone);
        (zone.label, zone.sublabel) = zone_labels(zone);
        zone.r = zone_radius(zone.members.len());
        by_group
            .entry((!zone.builtin, zone.group.clone()))
            .or_default()
            .push(i);
    }
    by_group
        .into_iter()
        .map(|((_, name), mut members)| {
            members.sort_by(|&a, &b| zones[a].zone.cmp(&zones[b].zone));
            lay_out_group(name, &members, zones)
        })
        .collect()
}

fn lay_out_group(name: String, members: &[usize], zones: &mut [MapZone]) -> MapGroup {
    let n = members.len();
    let outer = members.iter().map(|&i| zones[i].r).max().unwrap_or(0) + RING;
    let widest = members
        .iter()
        .map(|&i| label_width(&zones[i].label, &zones[i].sublabel))
        .max()
        .unwrap_or(0);
    let cell_w = (2 * outer).max(widest) + CELL_GAP;
    let cell_h = 2 * outer + LABEL_GAP + LABEL_H + CELL_GAP;
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    for (k, &i) in members.iter().enumerate() {
        let (col, row) = ((k % cols) as i32, (k / cols) as i32);
        zones[i].x = PAD + col * cell_w + cell_w / 2;
        zones[i].y = HEADER + row * cell_h + outer;
    }

    let builtin = name == BUILTIN_GROUP;
    let quarantined = members
        .iter()
        .filter(|&&i| zones[i].quarantined || zones[i].quarantined_members > 0)
        .count();
    let mode = members
        .iter()
        .map(|&i| zones[i].mode.as_str())
        .min_by_key(|m| mode_rank(m))
        .unwrap_or("learn")
        .to_owned();
    let label = cut(&name);
    let mut sublabel = format!("{n} zone{}", if n == 1 { "" } else { "s" });
    if quarantined > 0 {
        sublabel.push_str(&format!(" · {quarantined} quarantined"));
    }
    // The expanded box's title reads `label · sublabel`.
    let title_w = (chars(&label) + 3 + chars(&sublabel)) * HEADER_CHAR_W;
    let width = (2 * PAD + cols as i32 * cell_w).max(title_w + 2 * PAD);
    let height = HEADER + rows as i32 * cell_h;

    let r = (28.0 + 3.0 * (n as f64).sqrt()).min(56.0).round() as i32;
    let collapsed_width = (2 * (r + RING)).max(label_width(&label, &sublabel)) + 2 * PAD;
    let collapsed_height = PAD + 2 * (r + RING) + LABEL_GAP + LABEL_H + PAD;
    MapGroup {
        builtin,
        zones: n,
        quarantined,
        mode,
        label,
        sublabel,
        width,
        height,
        collapsed_width,
        collapsed_height,
        cx: collapsed_width / 2,
        cy: PAD + r + RING,
        r,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, members: usize, builtin: bool) -> MapZone {
        MapZone {
            zone: name.to_owned(),
            builtin,
            mode: ["learn", "monitor", "enforce"][name.len() % 3].to_owned(),
            quarantined: name.len().is_multiple_of(7),
            version: 1,
            members: (0..members).map(|m| format!("c{m}")).collect(),
            quarantined_members: name.len() % 5,
            ..MapZone::default()
        }
    }

    /// `namespaces` namespaces of the given sizes, names of varied lengths, varied
    /// member counts, and the built-in zones.
    fn zones(sizes: &[usize]) -> Vec<MapZone> {
        let mut zones = vec![zone("host", 0, true), zone("world", 0, true)];
        for (ns, &size) in sizes.iter().enumerate() {
            for z in 0..size {
                let name = format!(
                    "team{ns:02}/{}{z}",
                    "w".repeat((z * 7 + ns) % 40) // up to 40 characters: some are cut
                );
                zones.push(zone(&name, (z * 13 + ns) % 50, false));
            }
        }
        zones.push(zone("corp-dns", 0, true));
        zones.push(zone("plain", 3, false));
        zones
    }

    #[derive(Debug, Clone, Copy)]
    struct Rect {
        x0: i32,
        y0: i32,
        x1: i32,
        y1: i32,
    }

    impl Rect {
        fn overlaps(&self, o: &Rect) -> bool {
            self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
        }
        fn inside(&self, w: i32, h: i32) -> bool {
            self.x0 >= 0 && self.y0 >= 0 && self.x1 <= w && self.y1 <= h
        }
    }

    /// The circle with its quarantine ring, and the two label lines, as boxes.
    fn circle(x: i32, y: i32, r: i32) -> Rect {
        let r = r + RING;
        Rect {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        }
    }
    fn label(x: i32, y: i32, r: i32, label: &str, sub: &str) -> Rect {
        let w = label_width(label, sub);
        Rect {
            x0: x - w / 2,
            y0: y + r + LABEL_GAP,
            x1: x + w - w / 2,
            y1: y + r + LABEL_GAP + LABEL_H,
        }
    }

    fn assert_no_overlaps(sizes: &[usize]) {
        let mut zones = zones(sizes);
        let groups = lay_out(&mut zones);
        let total: usize = groups.iter().map(|g| g.zones).sum();
        assert_eq!(total, zones.len(), "every zone in one group");
        for g in &groups {
            let shapes: Vec<(Rect, Rect)> = zones
                .iter()
                .filter(|z| z.group == g.name)
                .map(|z| {
                    (
                        circle(z.x, z.y, z.r),
                        label(z.x, z.y, z.r, &z.label, &z.sublabel),
                    )
                })
                .collect();
            assert_eq!(shapes.len(), g.zones);
            for (i, (c, l)) in shapes.iter().enumerate() {
                assert!(c.inside(g.width, g.height), "{sizes:?} {g:?}: {c:?}");
                assert!(l.inside(g.width, g.height), "{sizes:?} {g:?}: {l:?}");
                assert!(!c.overlaps(l), "a zone's circle and its own label");
                for (c2, l2) in &shapes[i + 1..] {
                    for (a, b) in [(c, c2), (l, l2), (c, l2), (l, c2)] {
                        assert!(!a.overlaps(b), "{sizes:?} in {}: {a:?} {b:?}", g.name);
                    }
                }
            }
            let node = circle(g.cx, g.cy, g.r);
            let text = label(g.cx, g.cy, g.r, &g.label, &g.sublabel);
            assert!(node.inside(g.collapsed_width, g.collapsed_height), "{g:?}");
            assert!(text.inside(g.collapsed_width, g.collapsed_height), "{g:?}");
            assert!(!node.overlaps(&text), "{g:?}");
        }
    }

    #[test]
    fn no_circles_or_labels_overlap_from_one_zone_to_two_thousand() {
        for sizes in [
            vec![],
            vec![1],
            vec![2, 1],
            vec![6; 10],
            vec![40; 25],
            vec![2000],
            vec![1, 1999],
            vec![1; 300],
            vec![500, 3, 7, 90, 1, 1, 400, 998],
        ] {
            assert_no_overlaps(&sizes);
        }
    }

    #[test]
    fn the_same_zones_give_the_same_layout() {
        let mut a = zones(&[40; 25]);
        let mut b = a.clone();
        b.reverse();
        let (ga, gb) = (lay_out(&mut a), lay_out(&mut b));
        assert_eq!(ga, gb);
        b.reverse();
        assert_eq!(a, b, "positions do not depend on the input order");
        assert_eq!(ga[0].name, BUILTIN_GROUP, "the built-in zones come first");
        assert_eq!(ga[0].zones, 3, "host, world and the CIDR zone");
        assert_eq!(ga.last().unwrap().name, "team24");
    }

    #[test]
    fn labels_are_cut_and_groups_summarised() {
        let mut z = vec![
            zone("shop/an-extremely-long-workload-name-indeed", 1, false),
            zone("shop/db", 2, false),
        ];
        z[1].mode = "enforce".into();
        z[1].quarantined = true;
        z[0].mode = "monitor".into();
        z[0].quarantined = false;
        z[0].quarantined_members = 0;
        let groups = lay_out(&mut z);
        assert_eq!(z[0].label, "an-extremely-long-workl…");
        assert_eq!(z[0].label.chars().count(), LABEL_CHARS);
        assert_eq!(z[1].label, "db");
        assert_eq!(z[1].sublabel, "enforce · quarantined");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].mode, "monitor", "the weakest mode");
        assert_eq!(groups[0].sublabel, "2 zones · 1 quarantined");
    }
}
