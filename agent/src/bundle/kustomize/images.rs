//! ImageTagTransformer (`images`) and ReplicaCountTransformer (`replicas`).

use serde_json::Value;

use super::fieldspec::{self, FieldSpec};
use super::load::{Image, Replica};
use super::Res;

/// Sets `spec.replicas` (or the configured fields) of the workloads called `replica.name` (now or before).
pub fn replicas(acc: &mut [Res], replica: &Replica, specs: &[FieldSpec]) {
    for r in acc.iter_mut().filter(|r| r.answers_to(&replica.name)) {
        let count = replica.count;
        fieldspec::apply_all(r, specs, &mut |v| *v = Value::from(count));
    }
}

/// Rewrites `image` of every container and init container anywhere in the object, and at any custom fields.
pub fn images(acc: &mut [Res], image: &Image, specs: &[FieldSpec]) {
    for r in acc.iter_mut() {
        containers(&mut r.obj, image);
        for spec in specs {
            // The default specs are covered by the walk above; custom ones name other fields.
            if spec.path.contains("containers") || !spec.selects(r) {
                continue;
            }
            let spec = FieldSpec {
                create: false,
                ..spec.clone()
            };
            fieldspec::visit(&mut r.obj, &spec, &mut |v| {
                if let Some(new) = v.as_str().and_then(|s| retag(s, image)) {
                    *v = Value::String(new);
                }
            });
        }
    }
}

fn containers(v: &mut Value, image: &Image) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "containers" || key == "initContainers" {
                    if let Some(list) = child.as_array_mut() {
                        for c in list {
                            if let Some(slot) = c.get_mut("image") {
                                if let Some(new) = slot.as_str().and_then(|s| retag(s, image)) {
                                    *slot = Value::String(new);
                                }
                            }
                        }
                    }
                }
                containers(child, image);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| containers(i, image)),
        _ => {}
    }
}

/// The new reference for `current` if `image.name` names it.
pub fn retag(current: &str, image: &Image) -> Option<String> {
    // name[:tag][@digest]; a `:` before the last `/` belongs to a registry port.
    let (rest, digest) = match current.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (current, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if name != image.name {
        return None;
    }
    let new_name = image.new_name.as_deref().unwrap_or(name);
    // Measured with kubectl 1.32: `newTag` wins over `tagSuffix`; a suffix alone extends the current tag.
    let new_tag = match (&image.new_tag, &image.tag_suffix) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(s)) => Some(format!("{}{s}", tag.unwrap_or("latest"))),
        (None, None) => None,
    };
    Some(if let (Some(d), Some(t)) = (&image.digest, &new_tag) {
        format!("{new_name}:{t}@{d}")
    } else if let Some(d) = &image.digest {
        format!("{new_name}@{d}")
    } else if let Some(t) = &new_tag {
        format!("{new_name}:{t}")
    } else {
        let mut s = new_name.to_string();
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d);
        }
        s
    })
}
