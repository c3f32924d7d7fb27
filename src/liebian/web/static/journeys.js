// 旅程 journey builder: pick a trigger, add steps in a column (waits, branches, messages,
// tags, rewards, webhooks, staff tasks), save, publish, pause; per-step stats; preview on a
// contact. Values reach the page through textContent / setAttribute only (CSP: no inline code).
"use strict";
(() => {
  // The console's shared helpers (console.js, loaded first): one h(), one api(), one alert box.
  const C = window.liebianConsole;
  const { $, h } = C;
  const opts = C.options;
  const api = (method, path, json) => C.api(method, path, json === undefined ? {} : { json });
  const say = (text) => C.showOk(text);
  const refuse = (text) => C.showAlert("error", "请先修改：", text);
  const problem = (err) => C.showError(err);

  const TRIGGERS = [["manual", "手动 / API 加入"], ["event", "发生事件"], ["tag_added", "被打上标签"], ["tag_removed", "被移除标签"],
    ["segment_entered", "进入人群"], ["segment_exited", "离开人群"], ["date_attribute", "日期属性（如生日）"], ["inactivity", "N 天未发生某事件"]];
  const ENTRY = [["once", "每人仅一次"], ["every_time", "每次触发都进入"], ["once_per_days", "每 N 天最多一次"]];
  const STEPS = [["send", "发送消息"], ["wait", "等待一段时间"], ["wait_until", "等到某个时间"], ["wait_event", "等待事件"],
    ["branch", "条件分支（标签）"], ["split", "随机分流 A/B"], ["add_tag", "打标签"], ["remove_tag", "移除标签"],
    ["grant_reward", "发放奖励/优惠券"], ["enrol_campaign", "加入裂变活动"], ["webhook", "调用 Webhook"], ["task", "创建人工任务"]];
  const STATUS_ZH = { draft: "草稿", live: "进行中", paused: "已暂停", archived: "已归档" };
  let vocab = { tags: [], segments: [], events: [], custom_attributes: [] };
  let channels = [];
  let campaigns = [];
  let trigger = { type: "manual" };
  let steps = [];
  let editing = null;
  let seq = 0;

  const newId = () => "s" + (++seq);
  function newStep(kind) {
    const id = newId();
    if (kind === "send") return { id, type: "send", channel_id: (channels[0] || {}).id || "", content: { text: "{{ contact.nickname | default('朋友') }}，你好！" } };
    if (kind === "wait") return { id, type: "wait", duration: { days: 1 } };
    if (kind === "wait_until") return { id, type: "wait", until: { time: "10:00", weekdays: [1, 2, 3, 4, 5, 6, 7] } };
    if (kind === "wait_event") return { id, type: "wait_event", event: "purchase", timeout: { days: 3 } };
    if (kind === "branch") return { id, type: "branch", condition: { type: "tags", match: "any", tags: [] } };
    if (kind === "split") return { id, type: "split", paths: [{ percent: 50 }, { percent: 50, next: null }] };
    if (kind === "add_tag" || kind === "remove_tag") return { id, type: kind, tag_ids: [] };
    if (kind === "grant_reward") return { id, type: "grant_reward", kind: "coupon", amount: 500, name: "优惠券" };
    if (kind === "enrol_campaign") return { id, type: "enrol_campaign", campaign_id: (campaigns[0] || {}).id || "" };
    if (kind === "webhook") return { id, type: "webhook", url: "https://" };
    return { id, type: "task", title: "回访 {{ contact.external_id }}" };
  }
  const kindOf = (s) => (s.type === "wait" && s.until ? "wait_until" : s.type);

  function field(label, input) { return h("label", {}, label, input); }
  function num(value, onchange, min = 0) {
    return h("input", { type: "number", min, value, class: "jr-num", onchange: (e) => onchange(Number(e.target.value)) });
  }
  function text(value, onchange, placeholder) {
    return h("input", { value: value || "", placeholder, oninput: (e) => onchange(e.target.value) });
  }
  function tagPicker(selected, onchange) {
    if (!vocab.tags.length) return h("span", { class: "hint", text: "还没有标签，先去「标签」页创建" });
    return h("span", { class: "jr-tags" }, vocab.tags.filter((t) => t.kind !== "rule").map((t) => h("label", {},
      h("input", { type: "checkbox", checked: selected.includes(t.id), onchange: (e) => {
        const set = new Set(selected); if (e.target.checked) set.add(t.id); else set.delete(t.id); onchange([...set]);
      } }), t.name)));
  }
  function stepTarget(cur, onchange, label) {
    const pairs = [["", "下一步"], ["__end__", "结束"], ...steps.map((s, i) => [s.id, `第 ${i + 1} 步`])];
    return field(label, h("select", { onchange: (e) => onchange(e.target.value) }, opts(pairs, cur === null ? "__end__" : cur || "")));
  }
  const target = (v) => (v === "" ? undefined : v === "__end__" ? null : v);

  function renderTrigger() {
    const box = $("#jr-trigger"); box.replaceChildren();
    box.append(field("触发方式", h("select", { id: "jr-trigger-type", onchange: (e) => {
      const t = e.target.value;
      trigger = { type: t };
      if (t === "event") trigger.event = vocab.events[0] || "signup";
      if (t === "tag_added" || t === "tag_removed") trigger.tag_id = (vocab.tags[0] || {}).id || "";
      if (t === "segment_entered" || t === "segment_exited") trigger.segment_id = (vocab.segments[0] || {}).id || "";
      if (t === "date_attribute") Object.assign(trigger, { attribute: "birthday", offset_days: -7, at: "10:00" });
      if (t === "inactivity") Object.assign(trigger, { event: "purchase", days: 30 });
      renderTrigger();
    } }, opts(TRIGGERS, trigger.type))));
    const t = trigger.type;
    if (t === "event" || t === "inactivity") box.append(field("事件名", text(trigger.event, (v) => { trigger.event = v; }, "如：signup")));
    if (t === "inactivity") box.append(field("天数", num(trigger.days, (v) => { trigger.days = v; }, 1)));
    if (t === "tag_added" || t === "tag_removed") box.append(field("标签", h("select", { onchange: (e) => { trigger.tag_id = e.target.value; } },
      opts(vocab.tags.map((x) => [x.id, x.name]), trigger.tag_id))));
    if (t === "segment_entered" || t === "segment_exited") box.append(field("人群", h("select", { onchange: (e) => { trigger.segment_id = e.target.value; } },
      opts(vocab.segments.map((x) => [x.id, x.name]), trigger.segment_id))));
    if (t === "date_attribute") {
      box.append(field("日期属性", h("select", { onchange: (e) => { trigger.attribute = e.target.value; } },
        opts(vocab.custom_attributes.filter((a) => a.type === "date").map((a) => [a.key, a.key]), trigger.attribute))));
      box.append(field("提前/推后天数", num(trigger.offset_days, (v) => { trigger.offset_days = v; }, -366)));
      box.append(field("当天时间", text(trigger.at, (v) => { trigger.at = v; }, "10:00")));
    }
  }

  function renderSteps() {
    const list = $("#jr-steps"); list.replaceChildren();
    steps.forEach((s, i) => {
      const body = h("div", { class: "row" });
      const k = kindOf(s);
      if (k === "send") {
        body.append(field("渠道", h("select", { onchange: (e) => { s.channel_id = e.target.value; } }, opts(channels.map((c) => [c.id, c.name]), s.channel_id))));
        body.append(field("消息内容（可用 {{ contact.nickname | default('朋友') }}；短链 {{ links.短链后缀 }} 会带上此人的追踪标记）", h("textarea", { rows: 2, class: "jr-text", oninput: (e) => { s.content.text = e.target.value; } }, s.content.text || "")));
        body.append(field("带上活动邀请链接（可用 {{ campaign.invite_url }}、海报 {{ campaign.poster_url }}）", h("select", { class: "jr-send-campaign", onchange: (e) => {
          if (e.target.value) s.campaign_id = e.target.value; else delete s.campaign_id;
        } }, opts([["", "不带"], ...campaigns.map((c) => [c.id, c.name])], s.campaign_id || ""))));
      } else if (k === "wait") {
        const d = s.duration;
        body.append(field("天", num(d.days || 0, (v) => { d.days = v; })), field("小时", num(d.hours || 0, (v) => { d.hours = v; })), field("分钟", num(d.minutes || 0, (v) => { d.minutes = v; })));
      } else if (k === "wait_until") {
        body.append(field("时间", text(s.until.time, (v) => { s.until.time = v; }, "10:00")));
        body.append(h("span", { class: "jr-tags" }, ["一", "二", "三", "四", "五", "六", "日"].map((zh, j) => h("label", {},
          h("input", { type: "checkbox", checked: s.until.weekdays.includes(j + 1), onchange: (e) => {
            const set = new Set(s.until.weekdays); if (e.target.checked) set.add(j + 1); else set.delete(j + 1); s.until.weekdays = [...set].sort();
          } }), "周" + zh))));
      } else if (k === "wait_event") {
        body.append(field("事件名", text(s.event, (v) => { s.event = v; })), field("最多等待天数", num(s.timeout.days || 0, (v) => { s.timeout = { days: v }; }, 0)));
        body.append(stepTarget(s.timeout_next, (v) => { s.timeout_next = target(v); }, "超时后去"));
      } else if (k === "branch") {
        body.append(h("span", {}, "有其中任一标签："), tagPicker(s.condition.tags, (v) => { s.condition.tags = v; }));
        body.append(stepTarget(s.then, (v) => { s.then = target(v); }, "是 → 去"), stepTarget(s.else, (v) => { s.else = target(v); }, "否 → 去"));
      } else if (k === "split") {
        s.paths.forEach((p, j) => {
          body.append(field(`分组 ${"AB"[j] || j + 1} 比例 %`, num(p.percent, (v) => { p.percent = v; }, 1)));
          body.append(stepTarget(p.next, (v) => { p.next = target(v); }, `分组 ${"AB"[j] || j + 1} 去`));
        });
      } else if (k === "add_tag" || k === "remove_tag") {
        body.append(tagPicker(s.tag_ids, (v) => { s.tag_ids = v; }));
      } else if (k === "grant_reward") {
        body.append(field("类型", h("select", { onchange: (e) => { s.kind = e.target.value; } }, opts([["coupon", "优惠券"], ["points", "积分"], ["gift", "礼品"], ["cash", "现金"]], s.kind))));
        body.append(field("数额（分/积分）", num(s.amount, (v) => { s.amount = v; }, 1)), field("名称", text(s.name, (v) => { s.name = v; })));
      } else if (k === "enrol_campaign") {
        body.append(field("活动", h("select", { class: "jr-campaign", onchange: (e) => { s.campaign_id = e.target.value; } },
          opts(campaigns.map((c) => [c.id, c.name]), s.campaign_id))));
        if (!campaigns.length) body.append(h("span", { class: "hint", text: "还没有活动，先去「活动」页创建" }));
      } else if (k === "webhook") {
        body.append(field("地址", text(s.url, (v) => { s.url = v; }, "https://")));
      } else if (k === "task") {
        body.append(field("任务标题", text(s.title, (v) => { s.title = v; })));
      }
      list.append(h("li", { class: "jr-step card", "data-step": s.id },
        h("div", { class: "row jr-step-head" },
          h("b", { text: `第 ${i + 1} 步` }),
          h("select", { class: "jr-kind", "aria-label": "步骤类型", onchange: (e) => { steps[i] = Object.assign(newStep(e.target.value), { id: s.id }); renderSteps(); } }, opts(STEPS, k)),
          h("button", { type: "button", class: "link", text: "删除", onclick: () => { steps.splice(i, 1); renderSteps(); } })),
        body));
    });
  }

  function definition() {
    const entry = { mode: $("#jr-entry").value };
    if (entry.mode === "once_per_days") entry.days = Number($("#jr-entry-days").value);
    const goal = $("#jr-goal").value.trim();
    return { trigger, entry, goal_event: goal || null, steps };
  }

  function load(j) {
    editing = j.id;
    $("#jr-name").value = j.name;
    trigger = j.draft.trigger;
    steps = j.draft.steps;
    seq = steps.length + 10;
    $("#jr-entry").value = (j.draft.entry || {}).mode || "once";
    $("#jr-goal").value = j.draft.goal_event || "";
    $("#jr-editing").textContent = `正在编辑「${j.name}」（${STATUS_ZH[j.status] || j.status}）`;
    renderTrigger(); renderSteps(); stats(j);
  }

  async function save() {
    const name = $("#jr-name").value.trim();
    if (!name) { refuse("请先填写旅程名称。"); return null; }
    try {
      const j = editing
        ? await api("PATCH", `/api/v1/journeys/${editing}`, { name, definition: definition() })
        : await api("POST", "/api/v1/journeys", { name, definition: definition() });
      editing = j.id;
      say(`已保存旅程「${j.name}」的草稿`);
      await refresh();
      return j;
    } catch (err) { problem(err); return null; }
  }

  async function action(id, verb) {
    try {
      await api("POST", `/api/v1/journeys/${id}/${verb}`);
      say({ publish: "已发布", pause: "已暂停", resume: "已恢复" }[verb] || "已完成");
      await refresh();
    } catch (err) { problem(err); }
  }

  async function stats(j) {
    const box = $("#jr-stats");
    try {
      const s = await api("GET", `/api/v1/journeys/${j.id}/stats`);
      $("#jr-stats-title").textContent = `「${j.name}」步骤数据`;
      $("#jr-stats-sum").textContent = `进入 ${s.entered} · 进行中 ${s.active} · 完成 ${s.completed} · 退出 ${s.exited} · 转化 ${s.converted}`;
      $("#jr-stats-rows").replaceChildren(...s.steps.map((x, i) => h("tr", {},
        h("td", { text: `${i + 1}. ${(STEPS.find(([k]) => k === x.type) || [0, x.type])[1]}` }),
        h("td", { class: "num", text: x.reached }), h("td", { class: "num", text: x.done }),
        h("td", { class: "num", text: x.failed }), h("td", { class: "num", text: x.pending }),
        h("td", { class: "num", text: (x.conversion * 100).toFixed(1) + "%" }))));
      box.hidden = false;
    } catch (err) { box.hidden = true; }
  }

  async function refresh() {
    const rows = await api("GET", "/api/v1/journeys");
    $("#jr-empty").hidden = rows.length > 0;
    $("#jr-list").replaceChildren(...rows.map((j) => h("tr", { class: "jr-row" },
      h("td", {}, h("button", { type: "button", class: "link", text: j.name, onclick: () => load(j) })),
      h("td", { text: STATUS_ZH[j.status] || j.status }),
      h("td", { text: j.live_version ? "v" + j.live_version : "—" }),
      h("td", {},
        j.status === "draft" || j.status === "live" ? h("button", { type: "button", class: "link", text: "发布", onclick: () => action(j.id, "publish") }) : null,
        j.status === "live" ? h("button", { type: "button", class: "link", text: "暂停", onclick: () => action(j.id, "pause") }) : null,
        j.status === "paused" ? h("button", { type: "button", class: "link", text: "恢复", onclick: () => action(j.id, "resume") }) : null))));
  }

  async function preview() {
    const sample = $("#jr-sample").value.trim();
    if (!editing || !sample) { refuse("请先保存旅程，并填写一个用户ID。"); return; }
    try {
      const got = await api("POST", `/api/v1/journeys/${editing}/dry-run`, { contact: sample, draft: true });
      const box = $("#jr-preview-box");
      box.replaceChildren(...got.steps.map((s) => h("li", {},
        `${(STEPS.find(([k]) => k === s.type) || [0, s.type])[1]}`,
        s.message ? h("q", { text: s.message.text || JSON.stringify(s.message) }) : null,
        s.branch ? ` → ${s.branch === "then" ? "是" : "否"}` : null,
        s.problem ? h("span", { class: "hint", text: " " + s.problem }) : null)));
      box.hidden = false;
    } catch (err) { problem(err); }
  }

  async function init() {
    if (document.body.dataset.page !== "journeys") return;
    try {
      const [v, chs, templates, cps] = await Promise.all([
        api("GET", "/api/v1/segments/vocabulary"), api("GET", "/api/v1/channels").catch(() => []),
        api("GET", "/api/v1/journey-templates"), api("GET", "/api/v1/campaigns?status=active&limit=200").catch(() => ({ items: [] }))]);
      vocab = v; channels = Array.isArray(chs) ? chs : (chs.items || []);
      campaigns = Array.isArray(cps) ? cps : (cps.items || []);
      $("#jr-template").replaceChildren(...opts(templates.map((t) => [t.id, t.name])));
      $("#jr-channel").replaceChildren(...opts(channels.map((c) => [c.id, c.name])));
    } catch (err) { problem(err); }
    $("#jr-entry").replaceChildren(...opts(ENTRY, "once"));
    $("#jr-entry").addEventListener("change", () => { $("#jr-entry-days-wrap").hidden = $("#jr-entry").value !== "once_per_days"; });
    steps = [newStep("send")];
    renderTrigger(); renderSteps();
    $("#jr-add").addEventListener("click", () => { steps.push(newStep("wait")); renderSteps(); });
    $("#jr-new").addEventListener("click", () => { editing = null; $("#jr-name").value = ""; trigger = { type: "manual" }; steps = [newStep("send")]; $("#jr-editing").textContent = ""; renderTrigger(); renderSteps(); });
    $("#jr-save").addEventListener("click", save);
    $("#jr-publish").addEventListener("click", async () => { const j = await save(); if (j) await action(j.id, "publish"); });
    $("#jr-preview").addEventListener("click", preview);
    $("#jr-from-template").addEventListener("click", async () => {
      try {
        const j = await api("POST", "/api/v1/journeys/from-template", { template: $("#jr-template").value, channel_id: $("#jr-channel").value });
        say(`已从模板创建「${j.name}」（草稿）`);
        await refresh(); load(j);
      } catch (err) { problem(err); }
    });
    await refresh();
    document.body.dataset.journeysReady = "1";
  }
  document.addEventListener("DOMContentLoaded", init);
})();
