// Reading a node's connections through the API each frontend supports.  Frontend 1.58 deprecates
// reading `input.link` / `output.links` (it logs a warning) in favour of node.getInputLink(slot) /
// node.getOutputNodes(slot); both methods also exist in the 2024 LiteGraph and every frontend
// since, and the direct fields stay the fallback for anything older or unusual.  No import-time
// effects.

function graphLink(graph, id) {
  const links = graph?.links;
  if (!links || id == null) return null;
  return typeof links.get === "function" ? links.get(id) : links[id];
}

/** The link object ({id, origin_id, origin_slot, target_id, ...}) feeding input `slot` of `node`, or null. */
export function inputLink(node, slot) {
  if (!node?.inputs || slot < 0 || slot >= node.inputs.length) return null;
  if (typeof node.getInputLink === "function") {
    if (!node.graph) return null; // newer LiteGraph throws without a graph
    return node.getInputLink(slot) ?? null;
  }
  return graphLink(node.graph, node.inputs[slot].link);
}

/** Id of the link feeding input `slot`, or null when the input is not connected. */
export function inputLinkId(node, slot) {
  return inputLink(node, slot)?.id ?? null;
}

/** Nodes fed by output `slot` of `node` (possibly empty). */
export function outputTargets(node, slot) {
  if (!node?.outputs || slot == null || slot < 0 || slot >= node.outputs.length || !node.graph) return [];
  if (typeof node.getOutputNodes === "function") return node.getOutputNodes(slot) ?? [];
  const graph = node.graph;
  return (node.outputs[slot].links || []).map((id) => graph.getNodeById?.(graphLink(graph, id)?.target_id)).filter(Boolean);
}
