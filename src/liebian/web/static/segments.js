// 人群 segment builder: compose a condition by clicking, preview the count, save, see the
// size trend. Values reach the page through textContent / setAttribute only.
"use strict";
(() => {
  const KEY = "liebian.apiKey";
  // DOM, API and alert helpers are console.js's (loaded first, deferred in order).
  const { $, h, options, showAlert, showError, hideAlert } = window.liebianConsole;
  const api = (method, path, json) => window.liebianConsole.api(method, path, json === undefined ? {} : { json });
  const alertBox = (kind, text) => showAlert(kind, kind === "ok" ? "成功：" : "", text);

  const ATTR_ZH = { external_id: "用户ID", created_at: "创建时间", first_seen_at: "首次访问", last_seen_at: "最近活跃",
    first_channel: "首次渠道", last_channel: "最近渠道", source_campaign_id: "来源活动", referrer_contact_id: "邀请人",
    orders_count: "订单数", gmv_cents: "消费总额(分)", last_order_at: "最近下单", invites_made: "邀请人数",
    invites_qualified: "有效邀请", rfm_class: "RFM 分层" };
  const OP_ZH = { eq: "等于", neq: "不等于", lt: "小于", lte: "小于等于", gt: "大于", gte: "大于等于", between: "介于",
    in: "是其中之一", not_in: "不是其中之一", contains: "包含", is_set: "有值", is_not_set: "没有值",
    before: "早于", after: "晚于", within_last_days: "最近N天内" };
  const KIND_ZH = [["attribute", "用户属性"], ["tags", "标签"], ["event", "行为"], ["event_time", "首次/最近一次行为"],
    ["campaign", "活动参与"], ["community", "社群"], ["segment", "其他人群"], ["channel", "来源渠道"]];
  const COMMUNITY_STATUS = [["joined", "在群中"], ["routed", "已分配群、未确认入群"], ["left", "已退群/被移出"], ["any", "进过社群（任意状态）"]];
  let vocab = { attributes: [], custom_attributes: [], tags: [], events: [], segments: [], communities: [], operators: {} };
  let root = newGroup();
  let editing = null; // segment id being edited

  function newGroup() { return { type: "and", conditions: [newLeaf()] }; }
  function newLeaf(kind = "attribute") {
    if (kind === "attribute") return { type: "attribute", attribute: "orders_count", op: "gte", value: 1 };
    if (kind === "tags") return { type: "tags", match: "any", tags: [] };
    if (kind === "event") return { type: "event", event: vocab.events[0] || "purchase", did: true, window: { last_days: 30 } };
    if (kind === "event_time") return { type: "event_time", event: vocab.events[0] || "visit", which: "last", op: "within_last_days", value: 7 };
    if (kind === "campaign") return { type: "campaign", status: "joined" };
    if (kind === "community") return { type: "community", community_id: (vocab.communities[0] || {}).id || null, status: "joined" };
    if (kind === "segment") return { type: "segment", segment_id: (vocab.segments[0] || {}).id || "", in: true };
    return { type: "channel", which: "first", in: [] };
  }
  function attrType(name) {
    if (name.startsWith("custom.")) {
      const d = vocab.custom_attributes.find((a) => "custom." + a.key === name);
      return d ? d.type : "string";
    }
    const d = vocab.attributes.find((a) => a.key === name);
    return d ? d.type : "string";
  }

  // ---- rendering --------------------------------------------------------------------------
  function render() {
    const tree = $("#seg-tree");
    tree.replaceChildren(renderGroup(root, null, 0));
  }
  function renderGroup(group, parent, depth) {
    const negated = group.type === "not";
    const inner = negated ? group.condition : group;
    const box = h("div", { class: "seg-group" });
    const head = h("div", { class: "seg-group-head" },
      h("span", { text: depth ? "条件组：满足" : "满足以下" }),
      h("select", { "aria-label": "全部或任一", onchange: (e) => { inner.type = e.target.value; } },
        options([["and", "全部条件"], ["or", "任一条件"]], inner.type)),
      parent ? h("button", { type: "button", class: "link small", text: "删除条件组",
        onclick: () => { parent.conditions.splice(parent.conditions.indexOf(group), 1); render(); } }) : null);
    box.append(head);
    inner.conditions.forEach((cond, i) => {
      if (cond.type === "and" || cond.type === "or" || (cond.type === "not" && ["and", "or"].includes(cond.condition.type)))
        box.append(renderGroup(cond, inner, depth + 1));
      else box.append(renderLeaf(cond, inner, i));
    });
    box.append(h("div", { class: "seg-add" },
      h("button", { type: "button", class: "small", text: "＋ 添加条件", onclick: () => { inner.conditions.push(newLeaf()); render(); } }),
      depth < 3 ? h("button", { type: "button", class: "small", text: "＋ 添加条件组",
        onclick: () => { inner.conditions.push(newGroup()); render(); } }) : null));
    return box;
  }
  function renderLeaf(cond, parent, index) {
    const negated = cond.type === "not";
    const leaf = negated ? cond.condition : cond;
    const row = h("div", { class: "seg-cond" });
    const setLeaf = (next) => { parent.conditions[index] = negated ? { type: "not", condition: next } : next; render(); };
    row.append(h("select", { "aria-label": "条件类型", class: "seg-kind", onchange: (e) => setLeaf(newLeaf(e.target.value)) },
      options(KIND_ZH, leaf.type)));
    row.append(...leafFields(leaf, () => render()));
    row.append(h("label", { class: "check" }, h("input", { type: "checkbox", checked: negated,
      onchange: (e) => { parent.conditions[index] = e.target.checked ? { type: "not", condition: leaf } : leaf; } }), "不满足"));
    row.append(h("button", { type: "button", class: "link small", text: "删除", "aria-label": "删除条件",
      onclick: () => { parent.conditions.splice(index, 1); if (!parent.conditions.length) parent.conditions.push(newLeaf()); render(); } }));
    return row;
  }
  function num(value, onchange, label) {
    return h("input", { type: "number", class: "seg-num", value: value ?? "", "aria-label": label || "数值",
      oninput: (e) => onchange(e.target.value === "" ? null : Number(e.target.value)) });
  }
  function txt(value, onchange, label, placeholder) {
    return h("input", { value: value ?? "", "aria-label": label, placeholder: placeholder || "", oninput: (e) => onchange(e.target.value) });
  }
  // Property filters of an event row (the analytics filter language): rows of field / op /
  // value kept beside the leaf and written back into leaf.where on every change.
  const FILTER_FIELDS = ["channel", "campaign_id", "link_id", "utm_source", "utm_campaign", "platform", "properties."];
  const FILTER_OPS = [["eq", "等于"], ["neq", "不等于"], ["contains", "包含"], ["gte", "≥"], ["lte", "≤"], ["gt", ">"], ["lt", "<"]];
  const filterRows = new WeakMap();
  function rowsOf(leaf) {
    if (!filterRows.has(leaf)) {
      const rows = [];
      for (const [field, spec] of Object.entries(leaf.where || {})) {
        if (spec && typeof spec === "object" && !Array.isArray(spec)) for (const [op, value] of Object.entries(spec)) rows.push({ field, op, value });
        else rows.push({ field, op: "eq", value: spec });
      }
      filterRows.set(leaf, rows);
    }
    return filterRows.get(leaf);
  }
  function writeWhere(leaf) {
    const where = {};
    for (const r of rowsOf(leaf)) {
      if (!r.field || r.field.endsWith(".")) continue;
      // numbers: the comparisons, revenue, and a numeric-looking property value (the filter
      // language tells text from numbers by the JSON type)
      const looksNumeric = typeof r.value === "string" && /^-?\d+(\.\d+)?$/.test(r.value.trim());
      const numeric = looksNumeric && (["gte", "lte", "gt", "lt"].includes(r.op) || r.field === "revenue"
        || (r.field.startsWith("properties.") && r.op !== "contains"));
      const value = numeric ? Number(r.value) : r.value;
      where[r.field] = Object.assign(where[r.field] || {}, { [r.op]: value });
    }
    if (Object.keys(where).length) leaf.where = where; else delete leaf.where;
  }
  function filterFields(leaf, rerender) {
    const listId = "seg-filter-fields";
    if (!document.getElementById(listId)) document.body.append(h("datalist", { id: listId }, FILTER_FIELDS.map((f) => h("option", { value: f }))));
    const rows = rowsOf(leaf);
    const out = rows.map((r, i) => h("span", { class: "seg-filter" },
      h("span", { class: "hint", text: i ? "且" : "其中" }),
      h("input", { value: r.field, list: listId, "aria-label": "筛选字段", placeholder: "如 channel 或 properties.plan", class: "seg-field",
        oninput: (e) => { r.field = e.target.value.trim(); writeWhere(leaf); } }),
      h("select", { "aria-label": "筛选方式", onchange: (e) => { r.op = e.target.value; writeWhere(leaf); } }, options(FILTER_OPS, r.op)),
      h("input", { value: r.value ?? "", "aria-label": "筛选值", class: "seg-field", oninput: (e) => { r.value = e.target.value; writeWhere(leaf); } }),
      h("button", { type: "button", class: "link small", text: "×", "aria-label": "删除筛选",
        onclick: () => { rows.splice(i, 1); writeWhere(leaf); rerender(); } })));
    if (rows.length < 5) {
      out.push(h("button", { type: "button", class: "small", text: "＋ 属性筛选",
        onclick: () => { rows.push({ field: "", op: "eq", value: "" }); rerender(); } }));
    }
    return out;
  }
  const dayStart = (v) => (v ? new Date(v + "T00:00:00").toISOString() : null);
  const nextDayStart = (v) => { if (!v) return null; const d = new Date(v + "T00:00:00"); d.setDate(d.getDate() + 1); return d.toISOString(); };
  const dayOf = (iso) => { if (!iso) return ""; const d = new Date(iso); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`; };
  const dayBefore = (iso) => { if (!iso) return ""; const d = new Date(iso); d.setDate(d.getDate() - 1); return dayOf(d.toISOString()); };

  function leafFields(leaf, rerender) {
    if (leaf.type === "attribute") {
      const attrs = vocab.attributes.map((a) => [a.key, ATTR_ZH[a.key] || a.key])
        .concat(vocab.custom_attributes.map((a) => ["custom." + a.key, "自定义·" + a.key]));
      const type = attrType(leaf.attribute);
      const ops = (vocab.operators[type] || []).map((o) => [o, OP_ZH[o] || o]);
      const out = [
        h("select", { "aria-label": "属性", onchange: (e) => { leaf.attribute = e.target.value; leaf.op = (vocab.operators[attrType(leaf.attribute)] || ["eq"])[0]; leaf.value = null; rerender(); } }, options(attrs, leaf.attribute)),
        h("select", { "aria-label": "比较方式", onchange: (e) => { leaf.op = e.target.value; leaf.value = null; rerender(); } }, options(ops, leaf.op)),
      ];
      if (["is_set", "is_not_set"].includes(leaf.op)) { delete leaf.value; return out; }
      if (leaf.op === "within_last_days") return out.concat(num(leaf.value, (v) => { leaf.value = v; }, "天数"), h("span", { text: "天" }));
      if (leaf.op === "between") {
        const pair = Array.isArray(leaf.value) ? leaf.value : [null, null];
        leaf.value = pair;
        const conv = (v) => (type === "number" ? (v === "" ? null : Number(v)) : v);
        return out.concat(txt(pair[0], (v) => { pair[0] = conv(v); }, "下限"), h("span", { text: "至" }), txt(pair[1], (v) => { pair[1] = conv(v); }, "上限"));
      }
      if (["in", "not_in"].includes(leaf.op)) {
        return out.concat(txt((leaf.value || []).join("，"), (v) => {
          leaf.value = v.split(/[,，、\s]+/).filter(Boolean).map((x) => (type === "number" ? Number(x) : x));
        }, "取值", "用逗号分隔"));
      }
      if (type === "number") return out.concat(num(leaf.value, (v) => { leaf.value = v; }, "取值"));
      if (type === "bool") { if (leaf.value == null) leaf.value = true; return out.concat(h("select", { "aria-label": "取值", onchange: (e) => { leaf.value = e.target.value === "true"; } }, options([["true", "是"], ["false", "否"]], leaf.value))); }
      if (type === "datetime" || type === "date") return out.concat(h("input", { type: "date", value: (leaf.value || "").slice(0, 10), "aria-label": "日期", oninput: (e) => { leaf.value = e.target.value; } }));
      return out.concat(txt(leaf.value, (v) => { leaf.value = v; }, "取值"));
    }
    if (leaf.type === "tags") {
      const boxes = vocab.tags.map((t) => h("label", { class: "check" }, h("input", { type: "checkbox", checked: leaf.tags.includes(t.id),
        onchange: (e) => { leaf.tags = e.target.checked ? leaf.tags.concat(t.id) : leaf.tags.filter((x) => x !== t.id); } }), t.name));
      return [h("select", { "aria-label": "标签匹配", onchange: (e) => { leaf.match = e.target.value; } }, options([["any", "有任一标签"], ["all", "有全部标签"], ["none", "没有这些标签"]], leaf.match)),
        h("span", { class: "seg-tags" }, boxes.length ? boxes : h("span", { class: "hint", text: "还没有标签" }))];
    }
    if (leaf.type === "event" || leaf.type === "event_time") {
      const listId = "seg-events-list";
      if (!document.getElementById(listId)) document.body.append(h("datalist", { id: listId }, vocab.events.map((e) => h("option", { value: e }))));
      const eventInput = h("input", { value: leaf.event, list: listId, "aria-label": "事件", placeholder: "事件名，如 purchase", oninput: (e) => { leaf.event = e.target.value.trim(); } });
      if (leaf.type === "event_time") {
        const out = [h("select", { "aria-label": "首次或最近一次", onchange: (e) => { leaf.which = e.target.value; } }, options([["first", "首次"], ["last", "最近一次"]], leaf.which)), eventInput,
          h("select", { "aria-label": "时间比较", onchange: (e) => { leaf.op = e.target.value; leaf.value = leaf.op === "within_last_days" ? 7 : ""; rerender(); } }, options([["before", "早于"], ["after", "晚于"], ["within_last_days", "在最近N天内"]], leaf.op))];
        if (leaf.op === "within_last_days") return out.concat(num(leaf.value, (v) => { leaf.value = v; }, "天数"), h("span", { text: "天" }), filterFields(leaf, rerender));
        return out.concat(h("input", { type: "date", value: (leaf.value || "").slice(0, 10), "aria-label": "日期", oninput: (e) => { leaf.value = e.target.value; } }), filterFields(leaf, rerender));
      }
      const mode = leaf.did === true ? "did" : leaf.did === false ? "didnt" : leaf.measure || "count";
      const span = !leaf.window ? "all" : leaf.window.last_days != null ? "days" : "dates";
      const out = [
        h("select", { "aria-label": "时间范围", onchange: (e) => {
          const v = e.target.value;
          leaf.window = v === "all" ? undefined : v === "days" ? { last_days: 30 } : { from: dayStart(dayOf(new Date(Date.now() - 30 * 864e5).toISOString())) };
          rerender(); } },
          options([["all", "全部时间"], ["days", "最近"], ["dates", "日期区间"]], span)),
      ];
      if (span === "days") out.push(num(leaf.window.last_days, (v) => { leaf.window = { last_days: v }; }, "最近天数"), h("span", { text: "天" }));
      if (span === "dates") {
        const w = leaf.window;
        const set = () => { leaf.window = Object.fromEntries(Object.entries(w).filter(([, v]) => v)); };
        out.push(h("input", { type: "date", value: dayOf(w.from), "aria-label": "开始日期", oninput: (e) => { w.from = dayStart(e.target.value); set(); } }),
          h("span", { text: "至" }),
          h("input", { type: "date", value: dayBefore(w.to), "aria-label": "结束日期", oninput: (e) => { w.to = nextDayStart(e.target.value); set(); } }));
      }
      out.push(h("select", { "aria-label": "做过或没做过", onchange: (e) => {
        const m = e.target.value;
        delete leaf.did; delete leaf.measure; delete leaf.op; delete leaf.value;
        if (m === "did") leaf.did = true; else if (m === "didnt") leaf.did = false;
        else Object.assign(leaf, { measure: m, op: "gte", value: m === "count" ? 2 : 10000 });
        rerender(); } }, options([["did", "做过"], ["didnt", "没做过"], ["count", "次数"], ["sum_revenue", "消费总额(分)"], ["avg_revenue", "平均消费(分)"]], mode)), eventInput);
      if (leaf.measure) {
        out.push(h("select", { "aria-label": "比较方式", onchange: (e) => { leaf.op = e.target.value; } },
          options([["gte", "至少"], ["lte", "至多"], ["eq", "等于"], ["gt", "大于"], ["lt", "小于"]], leaf.op)), num(leaf.value, (v) => { leaf.value = v; }, "次数或金额"));
        if (leaf.measure === "count") out.push(h("span", { text: "次" }));
      }
      return out.concat(filterFields(leaf, rerender));
    }
    if (leaf.type === "campaign") {
      const out = [h("select", { "aria-label": "参与方式", onchange: (e) => { leaf.status = e.target.value; if (leaf.status !== "invited") delete leaf.min; else leaf.min = 1; rerender(); } },
        options([["joined", "参与过活动"], ["invited", "邀请人数至少"], ["group_succeeded", "拼团成功过"]], leaf.status))];
      if (leaf.status === "invited") out.push(num(leaf.min, (v) => { leaf.min = v; }, "邀请人数"), h("span", { text: "人" }));
      out.push(txt(leaf.campaign_id, (v) => { leaf.campaign_id = v.trim() || null; }, "活动ID", "活动ID（留空为任意活动）"));
      return out;
    }
    if (leaf.type === "community") {
      const community = vocab.communities.find((m) => m.id === leaf.community_id);
      const out = [h("select", { "aria-label": "社群", onchange: (e) => {
        leaf.community_id = e.target.value || null; delete leaf.tier; delete leaf.group_id; rerender(); } },
        options([["", "任意社群"], ...vocab.communities.map((m) => [m.id, m.name])], leaf.community_id || "")),
      h("select", { "aria-label": "入群状态", onchange: (e) => { leaf.status = e.target.value; } }, options(COMMUNITY_STATUS, leaf.status))];
      if (community && community.tiers.length) {
        out.push(h("select", { "aria-label": "分层", onchange: (e) => { if (e.target.value) leaf.tier = e.target.value; else delete leaf.tier; } },
          options([["", "任意分层"], ...community.tiers.map((t) => [t.key, t.name])], leaf.tier || "")));
      }
      if (community && community.groups.length) {
        out.push(h("select", { "aria-label": "群", onchange: (e) => { if (e.target.value) leaf.group_id = e.target.value; else delete leaf.group_id; } },
          options([["", "任意群"], ...community.groups.map((g) => [g.id, g.name])], leaf.group_id || "")));
      }
      out.push(h("select", { "aria-label": "时间范围", onchange: (e) => {
        if (e.target.value === "days") leaf.within_last_days = 7; else delete leaf.within_last_days; rerender(); } },
        options([["all", "不限时间"], ["days", "最近"]], leaf.within_last_days ? "days" : "all")));
      if (leaf.within_last_days) out.push(num(leaf.within_last_days, (v) => { leaf.within_last_days = v; }, "最近天数"), h("span", { text: "天内" }));
      return out;
    }
    if (leaf.type === "segment") {
      const segs = vocab.segments.filter((s) => s.id !== editing).map((s) => [s.id, s.name]);
      if (!leaf.segment_id && segs.length) leaf.segment_id = segs[0][0];
      return [h("select", { "aria-label": "属于或不属于", onchange: (e) => { leaf.in = e.target.value === "in"; } }, options([["in", "属于"], ["out", "不属于"]], leaf.in === false ? "out" : "in")),
        h("select", { "aria-label": "人群", onchange: (e) => { leaf.segment_id = e.target.value; } }, options(segs, leaf.segment_id))];
    }
    return [h("select", { "aria-label": "首次或最近渠道", onchange: (e) => { leaf.which = e.target.value; } }, options([["first", "首次来源渠道"], ["last", "最近来源渠道"]], leaf.which)),
      txt((leaf.in || []).join("，"), (v) => { leaf.in = v.split(/[,，、\s]+/).filter(Boolean); }, "渠道", "如 wx_group，moments")];
  }

  // ---- actions ----------------------------------------------------------------------------
  function condition() { return JSON.parse(JSON.stringify(root)); }
  function explain(err) {
    if (!(err && err.details && err.details.path)) { showError(err); return; }
    showAlert("error", "请检查条件：", `${err.message}（位置 ${err.details.path}）`);
  }
  async function preview() {
    const btn = $("#seg-preview");
    btn.disabled = true;
    try {
      const r = await api("POST", "/api/v1/segments/preview", { condition: condition() });
      hideAlert();
      $("#seg-preview-box").hidden = false;
      $("#seg-count").textContent = r.count.toLocaleString("zh-CN");
      $("#seg-took").textContent = `（${r.took_ms} 毫秒）`;
      $("#seg-warn").textContent = r.warnings.join("；");
      $("#seg-sample").replaceChildren(...r.sample.map((m) => h("span", { class: "tag", text: m.external_id })));
    } catch (err) { explain(err); } finally { btn.disabled = false; }
  }
  async function save() {
    const name = $("#seg-name").value.trim();
    if (!name) { alertBox("error", "请先填写人群名称。"); return; }
    const btn = $("#seg-save");
    btn.disabled = true;
    try {
      const seg = editing
        ? await api("PATCH", `/api/v1/segments/${encodeURIComponent(editing)}`, { name, condition: condition() })
        : await api("POST", "/api/v1/segments", { name, kind: "dynamic", condition: condition() });
      editing = seg.id;
      alertBox("ok", `已保存人群「${seg.name}」：${seg.size.toLocaleString("zh-CN")} 人（版本 ${seg.version}）`);
      await loadList();
      await showDetail(seg);
    } catch (err) { explain(err); } finally { btn.disabled = false; }
  }
  async function saveRuleTag() {
    const name = $("#seg-name").value.trim();
    if (!name) { alertBox("error", "请先填写名称：规则标签用这个名称。"); return; }
    const btn = $("#seg-rule-tag");
    btn.disabled = true;
    try {
      const tag = await api("POST", "/api/v1/rule-tags", { name, condition: condition() });
      alertBox("ok", `已创建规则标签「${tag.name}」：现有 ${tag.added.toLocaleString("zh-CN")} 人打上，之后随条件自动增减。`);
    } catch (err) { explain(err); } finally { btn.disabled = false; }
  }
  async function freeze() {
    if (!editing) return;
    const source = vocab.segments.find((s) => s.id === editing);
    const name = `${source ? source.name : "人群"}（${new Date().toLocaleDateString("zh-CN")} 冻结）`;
    try {
      const seg = await api("POST", `/api/v1/segments/${encodeURIComponent(editing)}/freeze`, { name });
      alertBox("ok", `已冻结为静态名单「${seg.name}」：${seg.size.toLocaleString("zh-CN")} 人`);
      await loadList();
    } catch (err) { explain(err); }
  }
  async function loadList() {
    const page = await api("GET", "/api/v1/segments?limit=100");
    vocab.segments = page.items.map((s) => ({ id: s.id, name: s.name, kind: s.kind }));
    $("#seg-empty").hidden = page.items.length > 0;
    $("#seg-list").replaceChildren(...page.items.map((s) => h("tr", { class: "seg-row" + (s.id === editing ? " active" : ""), "data-id": s.id,
      onclick: () => edit(s) },
      h("td", {}, s.name, h("div", { class: "sub", text: s.kind === "static" ? "静态名单" : "动态人群" })),
      h("td", { class: "num", text: s.size.toLocaleString("zh-CN") }),
      h("td", { text: "v" + s.version }))));
  }
  async function edit(seg) {
    editing = seg.id;
    $("#seg-name").value = seg.name;
    $("#seg-editing").textContent = "正在编辑：" + seg.name;
    if (seg.condition) {
      const c = seg.condition;
      root = c.type === "and" || c.type === "or" ? c : { type: "and", conditions: [c] };
    }
    render();
    await loadList();
    await showDetail(seg);
  }
  async function showDetail(seg) {
    $("#seg-detail").hidden = false;
    $("#seg-freeze").hidden = seg.kind !== "dynamic";
    $("#seg-detail-title").textContent = `「${seg.name}」近30天人数`;
    const [sizes, hist] = await Promise.all([
      api("GET", `/api/v1/segments/${encodeURIComponent(seg.id)}/sizes?days=30`),
      api("GET", `/api/v1/segments/${encodeURIComponent(seg.id)}/history?limit=10`)]);
    drawTrend(sizes.items);
    const CH = { entered: "进入", exited: "离开" };
    $("#seg-history").replaceChildren(...(hist.items.length ? hist.items.map((x) => h("li", {
      text: `${new Date(x.at).toLocaleString("zh-CN", { hour12: false })} ${x.external_id || x.contact_id} ${CH[x.change] || x.change}（${x.cause}）` }))
      : [h("li", { class: "hint", text: "还没有记录" })]));
  }
  function drawTrend(points) {
    const svg = $("#seg-trend");
    const NS = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    if (!points.length) return;
    const max = Math.max(1, ...points.map((p) => p.size));
    const w = 300, hgt = 90, x0 = 10, y0 = 10;
    const step = points.length > 1 ? w / (points.length - 1) : 0;
    const coords = points.map((p, i) => `${x0 + i * step},${y0 + hgt - (p.size / max) * hgt}`);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", points.length > 1 ? coords.join(" ") : `${x0},${coords[0].split(",")[1]} ${x0 + w},${coords[0].split(",")[1]}`);
    svg.append(line);
    const label = (x, y, text, anchor) => { const t = document.createElementNS(NS, "text"); t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor); t.textContent = text; svg.append(t); };
    label(x0, 116, points[0].day.slice(5), "start");
    label(x0 + w, 116, points[points.length - 1].day.slice(5), "end");
    label(x0 + w, y0 + 2, "最多 " + max.toLocaleString("zh-CN") + " 人", "end");
  }

  async function boot() {
    if (document.body.dataset.page !== "segments" || (!sessionStorage.getItem(KEY) && !window.liebianSession())) return;
    try {
      vocab = await api("GET", "/api/v1/segments/vocabulary");
      await loadList();
    } catch (err) { alertBox("error", "加载失败：" + err.message); }
    render();
    $("#seg-preview").addEventListener("click", preview);
    $("#seg-save").addEventListener("click", save);
    $("#seg-rule-tag").addEventListener("click", saveRuleTag);
    $("#seg-freeze").addEventListener("click", freeze);
    $("#seg-new").addEventListener("click", () => { editing = null; root = newGroup(); $("#seg-name").value = ""; $("#seg-editing").textContent = ""; $("#seg-detail").hidden = true; render(); loadList(); });
    document.body.setAttribute("data-segments-ready", "1");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot); else boot();
})();
