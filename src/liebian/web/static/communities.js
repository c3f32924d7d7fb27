// 社群 / 社群详情 pages. Values reach the page through textContent / setAttribute only.
"use strict";
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  // The console's shared helpers (console.js, loaded first): one api(), one alert box.
  const C = window.liebianConsole;
  const { $, h } = C;
  const api = (method, path, json) => C.api(method, path, json === undefined ? {} : { json });
  const alertBox = (kind, text) => C.showAlert(kind, text, "");
  const problem = (e) => C.showError(e);
  const KIND = { acquisition: "引流群", welfare: "福利群", flash: "快闪群" };
  const THRESHOLD = { open: "公开", invitation: "邀请码", activity: "参加活动", purchase: "已购用户", screening: "筛选问卷" };
  const STATUS = { open: ["开放", "ok"], full: ["已满", "warn"], archived: ["已归档", "muted"] };
  const PLATFORM = { wechat: "个人微信群", wecom: "企业微信群" };
  const pct = (x) => (x * 100).toFixed(1) + "%";
  const lines = (v) => String(v || "").split(/\n/).map((s) => s.trim()).filter(Boolean);
  const fmtTime = (iso) => (iso ? new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso)) : "—");
  const localIso = (v) => (v ? new Date(v).toISOString() : null);

  // A small editor of rows (tiers, questions, routing rules, ladder steps): one input per field.
  function rowsEditor(box, fields, items, blank) {
    box.replaceChildren();
    const list = h("div", { class: "rows" });
    const addRow = (item) => {
      const row = h("div", { class: "row editor-row" });
      for (const f of fields) {
        const value = f.get ? f.get(item) : item[f.key];
        let input;
        if (f.options) {
          input = h("select", { name: f.key, "aria-label": f.label }, ...f.options.map(([v, t]) => h("option", { value: v, text: t })));
          input.value = value == null ? f.options[0][0] : String(value);
        } else if (f.type === "checkbox") {
          input = h("input", { type: "checkbox", name: f.key, checked: value !== false, "aria-label": f.label });
        } else {
          input = h("input", { name: f.key, type: f.type || "text", placeholder: f.label, "aria-label": f.label, value: value == null ? "" : String(value) });
        }
        row.append(f.type === "checkbox" ? h("label", { class: "check" }, input, f.label) : input);
      }
      row.append(h("button", { type: "button", class: "link", text: "删除", onclick: () => row.remove() }));
      list.append(row);
    };
    (items || []).forEach(addRow);
    box.append(list, h("button", { type: "button", text: "＋ 添加", onclick: () => addRow(blank) }));
    return () => [...list.children].map((row) => {
      const out = {};
      for (const f of fields) {
        const input = row.querySelector(`[name="${f.key}"]`);
        const raw = f.type === "checkbox" ? input.checked : input.value.trim();
        if (f.set) f.set(out, raw); else out[f.key] = raw;
      }
      return out;
    });
  }
  const num = (v) => (v === "" || v == null ? null : Number(v));

  // ── 社群 list ──────────────────────────────────────────────────────────────────────────
  async function pageList() {
    async function load() {
      const data = await api("GET", "/api/v1/communities?limit=200");
      const tbody = $("#cm-table tbody");
      tbody.replaceChildren(...data.items.map((c) => {
        const open = c.places.reduce((n, p) => n + p.groups_open, 0);
        const left = c.places.reduce((n, p) => n + p.places_left, 0);
        return h("tr", {},
          h("td", {}, h("a", { href: `/admin/communities/${encodeURIComponent(c.id)}`, text: c.name })),
          h("td", { text: KIND[c.kind] || c.kind }), h("td", { text: THRESHOLD[c.threshold] || c.threshold }),
          h("td", { text: open }), h("td", {}, h("span", { class: "badge " + (left < c.alert_below ? "bad" : "ok"), text: left })),
          h("td", { text: fmtTime(c.created_at) }));
      }));
      $("#cm-empty").hidden = data.items.length > 0;
    }
    $("#cm-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(ev.target);
      const body = { name: fd.get("name"), kind: fd.get("kind"), threshold: fd.get("threshold"), alert_below: Number(fd.get("alert_below") || 0) };
      if (fd.get("starts_at")) body.starts_at = localIso(fd.get("starts_at"));
      if (fd.get("ends_at")) body.ends_at = localIso(fd.get("ends_at"));
      if (body.threshold === "screening") body.screening = [{ key: "q1", label: "你为什么想加入？", type: "text" }];
      try {
        const c = await api("POST", "/api/v1/communities", body);
        location.href = `/admin/communities/${encodeURIComponent(c.id)}`;
      } catch (e) { problem(e); }
    });
    await load();
  }

  // ── 社群详情 ─────────────────────────────────────────────────────────────────────────
  async function pageDetail() {
    const id = $("#cd").dataset.id;
    const base = `/api/v1/communities/${encodeURIComponent(id)}`;
    let community;
    let getters = {};

    function fillHeader() {
      $("#cd-name").textContent = community.name;
      $("#cd-sub").textContent = `${KIND[community.kind] || community.kind} · 门槛：${THRESHOLD[community.threshold] || community.threshold}`;
      const entry = $("#cd-entry");
      entry.textContent = community.entry_url;
      entry.setAttribute("href", community.entry_url);
      const tierName = Object.fromEntries(community.tiers.map((t) => [t.key, t.name]));
      $("#cd-places").textContent = community.places.map((p) => `${p.tier ? tierName[p.tier] || p.tier : "不分层"} 剩 ${p.places_left} 个名额`).join("；");
      const tier = $("#gp-tier");
      tier.replaceChildren(h("option", { value: "", text: "不分层" }), ...community.tiers.map((t) => h("option", { value: t.key, text: t.name })));
    }

    // The workspace's channels that can post into a group (decision 0044): the brand's bot
    // behind a signed webhook, or a WeCom group robot.
    let bots = [];
    async function loadBots() {
      const all = (await api("GET", "/api/v1/channels")).items || [];
      bots = all.filter((c) => (c.kind === "webhook" || c.kind === "wecom_robot") && c.active);
      const pick = $("#gp-bot");
      pick.replaceChildren(botOption(""), ...bots.map((b) => botOption(b.id)));
    }
    const BOT_KIND = { webhook: "Webhook 机器人", wecom_robot: "企业微信群机器人" };
    function botOption(id) {
      if (!id) return h("option", { value: "", text: "无（发群主待办）" });
      const b = bots.find((x) => x.id === id);
      return h("option", { value: id, text: b ? `${b.name}（${BOT_KIND[b.kind] || b.kind}）` : id });
    }

    function groupEditor(g, colspan) {
      const bot = h("select", { name: "bot_channel_id", "aria-label": "群机器人" }, botOption(""), ...bots.map((b) => botOption(b.id)));
      if (g.bot_channel_id && !bots.some((b) => b.id === g.bot_channel_id)) bot.append(botOption(g.bot_channel_id));
      bot.value = g.bot_channel_id || "";
      const field = (name, label, value, extra) => h("label", {}, label, h("input", { name, value: value || "", maxlength: "128", ...(extra || {}) }));
      const form = h("form", { class: "grid gp-edit-form" },
        field("owner", "群主", g.owner, { maxlength: "64" }),
        field("owner_wecom_userid", "群主企业微信 userid", g.owner_wecom_userid, { maxlength: "64", placeholder: "如 zhangsan（企业群发的发送人）" }),
        field("chat_id", "企业微信 chat_id", g.chat_id),
        h("label", {}, "群机器人（内容日历经它发到群里）", bot),
        h("div", { class: "wide row" },
          h("button", { type: "submit", class: "primary", text: "保存" }),
          h("button", { type: "button", text: "取消", onclick: () => form.closest("tr").remove() })));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const body = {
          owner: form.owner.value.trim(), owner_wecom_userid: form.owner_wecom_userid.value.trim() || null,
          chat_id: form.chat_id.value.trim() || null, bot_channel_id: bot.value || null,
        };
        try {
          await api("PATCH", `/api/v1/community-groups/${encodeURIComponent(g.id)}`, body);
          await refresh(); alertBox("ok", `已保存「${g.name}」的设置。`);
        } catch (e) { problem(e); }
      });
      return h("tr", { class: "gp-edit", "data-edit": g.id }, h("td", { colspan: String(colspan) }, form));
    }

    async function loadGroups() {
      const groups = await api("GET", `${base}/groups`);
      const names = Object.fromEntries(community.tiers.map((t) => [t.key, t.name]));
      const botName = (id) => { const b = bots.find((x) => x.id === id); return b ? b.name : id; };
      $("#gp-table tbody").replaceChildren(...groups.map((g) => {
        const [label, cls] = STATUS[g.status] || [g.status, "muted"];
        const toggle = g.status === "archived" ? ["重新开放", "open"] : ["归档", "archived"];
        const notes = [];
        if (g.owner_wecom_userid) notes.push(`企微 ${g.owner_wecom_userid}`);
        if (g.bot_channel_id) notes.push(`机器人：${botName(g.bot_channel_id)}`);
        const tr = h("tr", { "data-group": g.id },
          h("td", {}, g.name, notes.length ? h("div", { class: "sub muted", text: notes.join(" · ") }) : ""),
          h("td", { text: PLATFORM[g.platform] || g.platform }),
          h("td", { text: g.tier ? names[g.tier] || g.tier : "—" }), h("td", { text: g.owner || "—" }),
          h("td", { class: "nowrap" }, h("meter", { min: 0, max: g.capacity, value: g.members, high: g.capacity * 0.9, optimum: 0 }), ` ${g.members} / ${g.capacity}`),
          h("td", {}, h("span", { class: "badge " + cls, text: label })),
          h("td", { class: "nowrap" },
            h("button", { type: "button", class: "link", text: "设置", onclick: () => {
              const open = tr.nextElementSibling;
              if (open && open.dataset.edit === g.id) { open.remove(); return; }
              tr.after(groupEditor(g, tr.children.length));
            } }),
            h("button", { type: "button", class: "link", text: toggle[0], onclick: async () => {
              try { await api("PATCH", `/api/v1/community-groups/${encodeURIComponent(g.id)}`, { status: toggle[1] }); await refresh(); } catch (e) { problem(e); }
            } })));
        return tr;
      }));
    }

    // 企业微信群发: a post to the WeCom customer groups, one WeCom task per group owner, which
    // the owner confirms in the WeCom app; WeCom caps each group at 4 a month.
    const PROGRESS = {
      sending: ["发送中", "muted"], pending_confirmation: ["待群主确认", "warn"], sent: ["已发送", "ok"],
      partly_sent: ["部分发送", "warn"], failed: ["失败", "bad"], refused: ["本月已达上限", "bad"], unknown: ["结果未知", "muted"],
    };
    const ITEM = { pending: "待确认", sent: "已发送", failed: "失败", over_cap: "本月已满 4 条", refused: "未发送", unknown: "未知", sending: "发送中" };
    const REASON = { not_in_group_or_not_customer: "群已解散或不在群内", monthly_limit_reached: "本月已收到 4 条", monthly_cap: "每月上限", wecom_refused: "企业微信拒绝" };
    const newKey = () => "console-" + (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
    let wpKey = newKey();
    async function loadWecomPosts() {
      const out = await api("GET", `${base}/wecom-posts`);
      $("#wp-cap").textContent = String(out.monthly_cap);
      $("#wp-table tbody").replaceChildren(...out.items.map((t) => {
        const [label, cls] = PROGRESS[t.progress] || [t.progress, "muted"];
        return h("tr", { "data-wecom-post": t.id },
          h("td", { class: "nowrap", text: fmtTime(t.created_at) }), h("td", { text: t.sender || "—" }),
          h("td", { class: "wp-text", text: t.text }),
          h("td", {}, h("span", { class: "badge " + cls, text: label }), t.errmsg ? h("div", { class: "sub muted", text: `${t.errcode ? t.errcode + " " : ""}${t.errmsg}` }) : ""),
          h("td", {}, h("ul", { class: "plain" }, ...t.groups.map((g) => h("li", {},
            `${g.name}：${ITEM[g.status] || g.status}`, g.reason && g.status !== "over_cap" ? h("span", { class: "muted", text: `（${REASON[g.reason] || g.reason}）` }) : "")))),
          h("td", {}, t.status === "created" && t.progress !== "sent" ? h("button", { type: "button", class: "link", text: "刷新结果", onclick: async () => {
            try { await api("POST", `/api/v1/connectors/wecom/mass-sends/${encodeURIComponent(t.id)}/refresh`); await loadWecomPosts(); } catch (e) { problem(e); }
          } }) : ""));
      }));
      $("#wp-empty").hidden = out.items.length > 0;
    }

    async function loadInbox() {
      const alerts = (await api("GET", `${base}/alerts?limit=20`)).items;
      $("#al-list").replaceChildren(...alerts.map((a) => h("li", { class: "alert-" + a.kind },
        h("span", { class: "badge " + (a.kind === "low_places" ? "bad" : "warn"), text: { low_places: "名额", violation: "违规", keyword: "关键词" }[a.kind] || a.kind }),
        " ", fmtTime(a.created_at), " ", a.message.split("\n")[0])));
      $("#al-empty").hidden = alerts.length > 0;
      const tasks = (await api("GET", "/api/v1/staff-tasks?limit=100")).items.filter((t) => t.kind.startsWith("community_"));
      $("#tk-list").replaceChildren(...tasks.map((t) => h("li", { "data-task": t.id },
        h("strong", { text: t.title }), " ", h("span", { class: "muted", text: t.assignee ? `@${t.assignee}` : "" }), " ",
        h("button", { type: "button", text: "完成", onclick: async () => {
          try { await api("POST", `/api/v1/staff-tasks/${encodeURIComponent(t.id)}/done`, { done_by: "console" }); await loadInbox(); } catch (e) { problem(e); }
        } }),
        h("pre", { class: "task-body", text: t.body }))));
      $("#tk-empty").hidden = tasks.length > 0;
    }

    function fillEditors() {
      const f = $("#sc-form");
      f.threshold.value = community.threshold;
      f.campaign_id.value = community.threshold_config.campaign_id || "";
      f.min_orders.value = community.threshold_config.min_orders || 1;
      getters.tiers = rowsEditor($("#ed-tiers"), [
        { key: "key", label: "标识（如 t03）" }, { key: "name", label: "名称（如 0–3 岁）" },
        { key: "age_q", label: "按日期题（可空）", get: (t) => t.age && t.age.question },
        { key: "min", label: "起（月）", type: "number", get: (t) => t.age && t.age.min_months },
        { key: "max", label: "止（月）", type: "number", get: (t) => t.age && t.age.max_months },
      ], community.tiers, {});
      getters.screening = rowsEditor($("#ed-screening"), [
        { key: "key", label: "标识" }, { key: "label", label: "问题" },
        { key: "type", label: "题型", options: [["single", "单选"], ["multiple", "多选"], ["text", "填空"], ["date", "日期"]] },
        { key: "options", label: "选项（逗号分隔）", get: (q) => (q.options || []).join(",") },
        { key: "attribute", label: "存入用户属性（可空）" },
        { key: "required", label: "必填", type: "checkbox" },
      ], community.screening, { required: true });
      getters.routing = rowsEditor($("#ed-routing"), [
        { key: "question", label: "问题标识" }, { key: "values", label: "答案（逗号分隔）", get: (r) => (r.values || []).join(",") },
        { key: "tier", label: "进入分层" },
      ], community.routing, {});
      const r = $("#rl-form");
      const rules = community.rules || {};
      r.banned_keywords.value = (rules.banned_keywords || []).join("\n");
      r.banned_patterns.value = (rules.banned_patterns || []).join("\n");
      r.alert_keywords.value = (rules.alert_keywords || []).join("\n");
      r.block_links.checked = !!rules.block_links;
      r.block_contact_details.checked = !!rules.block_contact_details;
      r.flood_per_minute.value = rules.flood_per_minute || "";
      getters.ladder = rowsEditor($("#ed-ladder"), [
        { key: "at", label: "第几次违规", type: "number" },
        { key: "action", label: "处理", options: [["warn", "警告"], ["mute", "禁言"], ["remove", "移出"]] },
        { key: "mute_hours", label: "禁言小时", type: "number" },
      ], rules.ladder || [], { action: "warn" });
      getters.firstDay = rowsEditor($("#ed-first-day"), [
        { key: "key", label: "标识（英文，如 coupon）" },
        { key: "label", label: "名称（如 领新人券）" },
        { key: "url", label: "链接 https://…", type: "url" },
      ], community.first_day_tasks || [], {});
      const t = $("#tp-form");
      t.welcome_template.value = community.welcome_template;
      t.announcement_template.value = community.announcement_template;
      t.channel_id.value = community.channel_id || "";
    }

    async function loadMetrics() {
      const by = $("#mt-form").by.value;
      const m = await api("GET", `${base}/metrics?by=${by}`);
      const groups = Object.fromEntries((await api("GET", `${base}/groups`)).map((g) => [g.id, g.name]));
      const label = (k) => (by === "community" ? community.name : groups[k] || k || "—");
      $("#mt-table tbody").replaceChildren(...m.summary.map((r) => h("tr", {},
        h("td", { text: label(r.key) }), h("td", { text: r.members }), h("td", { text: r.joins }), h("td", { text: r.leaves }),
        h("td", { text: pct(r.leave_rate) }), h("td", { text: pct(r.join_rate) }), h("td", { text: r.messages }),
        h("td", { text: r.active_7d }), h("td", { text: r.active_14d }), h("td", { text: r.active_30d }),
        h("td", { text: pct(r.first_day_rate) }), h("td", { text: r.violations }),
        h("td", { text: r.invitations }), h("td", { text: r.conversions }), h("td", { text: "¥" + (r.gmv / 100).toFixed(2) }))));
      // Daily series as bars (SVG attributes, no inline style): joins beside leaves, and
      // messages; the key rows of a day are summed (the community's day).
      const sum = (field) => { const out = {}; for (const d of m.days) out[d.day] = (out[d.day] || 0) + d[field]; return out; };
      const joins = sum("joins"), leaves = sum("leaves"), messages = sum("messages");
      // 成员 at the end of each day (every day of the range with members has a row per key).
      const members = sum("members");
      const days = [...new Set(m.days.map((d) => d.day))].sort();
      drawBars($("#mt-chart"), days, [{ name: "入群", values: joins, cls: "bar" }, { name: "退群", values: leaves, cls: "bar bar-alt" }]);
      drawBars($("#mt-chart-msg"), days, [{ name: "消息", values: messages, cls: "bar bar-msg" }]);
      drawBars($("#mt-chart-members"), days, [{ name: "成员", values: members, cls: "bar bar-members" }]);
      $("#mt-days tbody").replaceChildren(...days.map((day) => h("tr", { "data-day": day },
        h("td", { text: day }), h("td", { text: members[day] || 0 }), h("td", { text: joins[day] || 0 }),
        h("td", { text: leaves[day] || 0 }))));
    }

    function drawBars(svg, days, series) {
      const max = Math.max(1, ...series.flatMap((s) => days.map((d) => s.values[d] || 0)));
      const w = Math.min(600 / Math.max(days.length, 1), 48);
      const bw = Math.max((w - 4) / series.length, 1);
      const every = Math.ceil(days.length / 12);  // at most ~12 date labels: they stay apart
      const el = (tag, attrs, text) => {
        const node = document.createElementNS(SVG, tag);
        for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
        if (text != null) node.textContent = text;
        return node;
      };
      svg.replaceChildren(...days.map((day, i) => {
        const g = el("g", {});
        series.forEach((s, j) => {
          const v = s.values[day] || 0;
          const hgt = Math.round((v / max) * 100);
          const x = i * w + 2 + j * bw;
          const bar = el("rect", { x, y: 120 - hgt, width: Math.max(bw - 1, 1), height: hgt, class: s.cls });
          bar.append(el("title", {}, `${day} ${s.name} ${v}`));
          g.append(bar, el("text", { x: x + bw / 2, y: 116 - hgt, class: "bar-value" }, String(v)));
        });
        if (i % every === 0 || i === days.length - 1) g.append(el("text", { x: i * w + w / 2, y: 134, class: "bar-label" }, day.slice(5)));
        return g;
      }));
    }

    async function refresh() {
      community = await api("GET", base);
      if (!bots.length) await loadBots().catch(() => {});
      fillHeader();
      await loadGroups();
    }

    $("#gp-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(ev.target);
      const body = { name: fd.get("name"), platform: fd.get("platform") };
      for (const k of ["tier", "owner", "chat_id", "join_url", "owner_wecom_userid", "bot_channel_id"]) if (fd.get(k)) body[k] = fd.get(k);
      if (fd.get("capacity")) body.capacity = Number(fd.get("capacity"));
      const file = fd.get("qr");
      if (file && file.size) {
        body.qr_image = await new Promise((ok, bad) => { const r = new FileReader(); r.onload = () => ok(r.result); r.onerror = bad; r.readAsDataURL(file); });
      }
      try { await api("POST", `${base}/groups`, body); ev.target.reset(); await refresh(); alertBox("ok", "已添加群。"); } catch (e) { problem(e); }
    });
    $("#sc-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const tiers = getters.tiers().map((t) => {
        const out = { key: t.key, name: t.name };
        if (t.age_q) out.age = { question: t.age_q, min_months: num(t.min) ?? 0, max_months: num(t.max) ?? 0 };
        return out;
      });
      const screening = getters.screening().map((q) => {
        const out = { key: q.key, label: q.label, type: q.type, required: q.required, options: q.options ? q.options.split(/[,，]/).map((s) => s.trim()).filter(Boolean) : [] };
        if (q.attribute) out.attribute = q.attribute;
        return out;
      });
      const routing = getters.routing().map((r) => ({ question: r.question, tier: r.tier, values: r.values.split(/[,，]/).map((s) => s.trim()).filter(Boolean) }));
      const threshold_config = { min_orders: Number(f.min_orders.value || 1) };
      if (f.campaign_id.value.trim()) threshold_config.campaign_id = f.campaign_id.value.trim();
      try {
        community = await api("PATCH", base, { threshold: f.threshold.value, threshold_config, tiers, screening, routing });
        fillHeader(); alertBox("ok", "已保存门槛与问卷。");
      } catch (e) { problem(e); }
    });
    $("#rl-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const rules = {
        banned_keywords: lines(f.banned_keywords.value), banned_patterns: lines(f.banned_patterns.value),
        alert_keywords: lines(f.alert_keywords.value), block_links: f.block_links.checked,
        block_contact_details: f.block_contact_details.checked, flood_per_minute: num(f.flood_per_minute.value),
        ladder: getters.ladder().map((s) => ({ at: Number(s.at), action: s.action, mute_hours: s.action === "mute" ? num(s.mute_hours) : null })),
      };
      try { community = await api("PATCH", base, { rules }); alertBox("ok", "已保存群规则。"); } catch (e) { problem(e); }
    });
    $("#fd-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const first_day_tasks = getters.firstDay().map((t) => ({ key: t.key.trim(), label: t.label.trim(), url: t.url.trim() }));
      try { community = await api("PATCH", base, { first_day_tasks }); alertBox("ok", "已保存首日任务。"); } catch (e) { problem(e); }
    });
    $("#tp-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      try {
        community = await api("PATCH", base, { welcome_template: f.welcome_template.value, announcement_template: f.announcement_template.value, channel_id: f.channel_id.value.trim() || null });
        alertBox("ok", "已保存欢迎语与群公告。");
      } catch (e) { problem(e); }
    });
    $("#tp-preview").addEventListener("click", async () => {
      const f = $("#tp-form");
      try {
        const body = { welcome_template: f.welcome_template.value };
        if (f.preview_user.value.trim()) body.external_id = f.preview_user.value.trim();
        const out = await api("POST", `${base}/welcome-preview`, body);
        const pre = $("#tp-out"); pre.textContent = out.text; pre.hidden = false;
      } catch (e) { problem(e); }
    });
    $("#mt-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadMetrics().catch(problem); });

    // 内容日历: posts at a local time on weekdays, sent once per group and day as owner tasks.
    const DAYS = ["一", "二", "三", "四", "五", "六", "日"];
    $("#cal-days").append(...DAYS.map((d, i) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "wd", value: String(i + 1) }), `周${d}`)));
    async function loadCalendar() {
      const posts = await api("GET", `${base}/posts`);
      const tbody = $("#cal-table tbody");
      tbody.replaceChildren();
      for (const p of posts) {
        const sends = await api("GET", `/api/v1/community-posts/${encodeURIComponent(p.id)}/sends`);
        const done = sends.filter((s) => s.task_status === "done" || s.send_status === "sent" || s.wecom_progress === "sent").length;
        const waiting = sends.filter((s) => s.wecom_progress === "pending_confirmation").length;
        const clicks = sends.reduce((n, s) => n + s.clicks, 0);
        const next = p.status === "active" ? "paused" : "active";
        tbody.append(h("tr", { "data-post": p.id },
          h("td", { text: p.at }), h("td", { text: p.weekdays.length ? p.weekdays.map((d) => "周" + DAYS[d - 1]).join("、") : "每天" }),
          h("td", { text: p.image ? `${p.title}（含图）` : p.title }), h("td", { text: p.link_url || "—" }),
          h("td", { class: "cal-status", text: p.status === "active" ? "启用" : "暂停" }),
          h("td", { text: `${sends.length}（完成 ${done}${waiting ? `，待群主确认 ${waiting}` : ""}，点击 ${clicks}）` }),
          h("td", {}, h("button", { type: "button", class: "link", text: next === "paused" ? "暂停" : "启用", onclick: async () => {
            try { await api("PATCH", `/api/v1/community-posts/${encodeURIComponent(p.id)}`, { status: next }); await loadCalendar(); } catch (e) { problem(e); }
          } }))));
      }
    }
    const dataUrl = (file) => new Promise((ok, bad) => { const r = new FileReader(); r.onload = () => ok(r.result); r.onerror = bad; r.readAsDataURL(file); });
    let calImage = null;
    function setCalImage(url) {
      calImage = url;
      $("#cal-image").hidden = !url;
      if (url) $("#cal-image-img").setAttribute("src", url); else $("#cal-image-img").removeAttribute("src");
    }
    $("#cal-form").image_file.addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (file) setCalImage(await dataUrl(file));
    });
    $("#cal-image-clear").addEventListener("click", () => { setCalImage(null); $("#cal-form").image_file.value = ""; });
    $("#cal-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const body = { title: f.title.value.trim(), at: f.at.value, text: f.text.value.trim(),
        weekdays: [...f.querySelectorAll("input[name=wd]:checked")].map((c) => Number(c.value)) };
      if (f.link_url.value.trim()) body.link_url = f.link_url.value.trim();
      if (calImage) body.image = calImage;
      try { await api("POST", `${base}/posts`, body); f.reset(); setCalImage(null); await loadCalendar(); alertBox("ok", "已加入内容日历。"); } catch (e) { problem(e); }
    });

    // 素材库 (标题库 / 内容库 / 图片库): "使用" fills the calendar form.
    async function loadMaterials() {
      const items = await api("GET", "/api/v1/community-materials");
      const use = {
        title: (m) => { $("#cal-form").title.value = m.body.slice(0, 100); },
        content: (m) => { const t = $("#cal-form").text; t.value = t.value ? `${t.value}\n${m.body}` : m.body; },
        image: (m) => setCalImage(m.body),
      };
      for (const kind of ["title", "content", "image"]) {
        const mine = items.filter((m) => m.kind === kind);
        $(`#mat-${kind}`).replaceChildren(...(mine.length ? mine.map((m) => h("li", { "data-material": m.id },
          kind === "image" ? h("img", { src: m.body, alt: "图片素材", class: "mat-thumb" }) : h("span", { text: m.body }),
          " ", h("button", { type: "button", class: "link", text: "使用", onclick: () => use[kind](m) }))) : [h("li", { class: "muted", text: "（空）" })]));
      }
    }
    $("#mat-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const file = f.file.files[0];
      const body = { kind: f.kind.value, body: f.kind.value === "image" && file ? await dataUrl(file) : f.body.value.trim() };
      try { await api("POST", "/api/v1/community-materials", body); f.reset(); await loadMaterials(); alertBox("ok", "已加入素材库。"); } catch (e) { problem(e); }
    });

    // 入群页预览: the entry page at phone size through a signed preview address.
    async function loadPreview() {
      const link = await api("GET", `${base}/preview-link`);
      $("#pv-frame").setAttribute("src", link.url);
    }
    $("#pv-card").addEventListener("toggle", () => { if ($("#pv-card").open) loadPreview().catch(problem); });
    $("#pv-refresh").addEventListener("click", () => loadPreview().catch(problem));

    $("#wp-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      // One key per message typed: a double click or a resend after a lost answer is the same
      // post (the API returns the recorded tasks; WeCom is asked once).
      try {
        const out = await api("POST", `${base}/wecom-posts`, { idempotency_key: wpKey, text: f.text.value.trim() });
        wpKey = newKey(); f.reset();
        const skipped = out.skipped.length ? `；${out.skipped.length} 个群未发送（缺 chat_id 或群主企业微信 userid）` : "";
        alertBox("ok", `已创建 ${out.items.length} 个企业群发任务，等待群主在企业微信中确认${skipped}。`);
        await loadWecomPosts();
      } catch (e) { problem(e); }
    });
    $("#wp-form textarea").addEventListener("input", () => { wpKey = newKey(); });

    await refresh();
    fillEditors();
    await Promise.all([loadInbox(), loadMetrics(), loadCalendar(), loadWecomPosts(), loadMaterials()]);
  }

  const page = document.body.dataset.page;
  const run = page === "communities" ? ($("#cd") ? pageDetail : pageList) : null;
  if (run) run().catch(problem).finally(() => document.body.setAttribute("data-communities-ready", "1"));
})();
