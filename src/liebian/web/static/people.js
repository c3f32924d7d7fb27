// 用户 / 用户详情 / 标签 pages. Values reach the page through textContent / setAttribute only.
"use strict";
(() => {
  // DOM, API and alert helpers are console.js's (loaded first, deferred in order).
  const { $, h, api, dash, fmtTime, yuan, showAlert, showError } = window.liebianConsole;
  const alertBox = (kind, text) => showAlert(kind, kind === "ok" ? "成功：" : "请检查：", text);
  function problem(e) {
    const errs = e && e.details && e.details.errors;
    if (!errs) { showError(e); return; }
    // CSV import: every bad row with its line number and field
    showAlert("error", "请检查：", e.message, errs.slice(0, 200).map((x) => `第 ${x.row} 行 ${x.field}：${x.problem}`));
  }
  // A tag's colour through CSSOM (a custom property the stylesheet reads): the console's CSP
  // (style-src 'self') refuses inline style attributes.
  const chip = (t) => h("span", { class: "badge tag", style: { "--tag-color": t.color || "#2f6fed" }, text: t.name });
  const startOfDay = (v) => (v ? new Date(v + "T00:00:00").toISOString() : "");
  const nextDay = (v) => { const d = new Date(v + "T00:00:00"); d.setDate(d.getDate() + 1); return d.toISOString(); };

  async function loadTags() {
    return (await api("GET", "/api/v1/tags")).items;
  }

  // ---- 用户 list ---------------------------------------------------------------------------
  async function pageContacts() {
    const [tags, segments, communities] = await Promise.all([loadTags(),
      api("GET", "/api/v1/segments?limit=200"), api("GET", "/api/v1/communities?limit=200").catch(() => ({ items: [] }))]);
    for (const t of tags) $("#ct-tag").append(h("option", { value: t.id, text: t.name }));
    for (const s of segments.items) $("#ct-segment").append(h("option", { value: s.id, text: s.name }));
    for (const m of communities.items) $("#ct-community").append(h("option", { value: m.id, text: m.name }));
    let cursor = null;
    const params = () => {
      const fd = new FormData($("#ct-form"));
      const p = new URLSearchParams();
      for (const k of ["q", "tag", "channel", "segment", "campaign_id"]) if (fd.get(k)) p.set(k, String(fd.get(k)).trim());
      if (fd.get("community")) { p.set("community", fd.get("community")); p.set("community_status", fd.get("community_status")); }
      for (const k of ["first_seen_from", "first_seen_to", "last_seen_from", "last_seen_to"]) {
        // "到 11-05" includes that day: the API's upper bound is exclusive
        if (fd.get(k)) p.set(k, k.endsWith("_to") ? nextDay(fd.get(k)) : startOfDay(fd.get(k)));
      }
      return p;
    };
    async function load(more) {
      const p = params();
      p.set("limit", "50");
      if (more && cursor) p.set("cursor", cursor);
      const page = await api("GET", "/api/v1/contacts?" + p);
      const body = $("#ct-table tbody");
      if (!more) body.replaceChildren();
      for (const c of page.items) {
        body.append(h("tr", {},
          h("td", {}, h("a", { href: "/admin/contacts/" + encodeURIComponent(c.id), text: c.external_id })),
          h("td", { text: dash(c.nickname) }), h("td", { text: dash(c.phone) }),
          h("td", {}, c.tags.map(chip)), h("td", { text: dash(c.first_channel) }),
          h("td", { text: `${c.orders_count} 单 / ${yuan(c.gmv_cents)}` }),
          h("td", { text: fmtTime(c.last_seen_at) })));
      }
      cursor = page.next_cursor;
      $("#ct-more").hidden = !cursor;
      $("#ct-empty").hidden = body.children.length > 0;
    }
    $("#ct-form").addEventListener("submit", (ev) => { ev.preventDefault(); load(false).catch(problem); });
    $("#ct-more").addEventListener("click", () => load(true).catch(problem));
    $("#ct-export").addEventListener("click", async () => {
      try {
        const resp = await api("GET", "/api/v1/contacts/export.csv?" + params(), { raw: true });
        const url = URL.createObjectURL(await resp.blob());
        h("a", { href: url, download: "contacts.csv" }).click();
      } catch (e) { problem(e); }
    });
    $("#ct-import").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      try {
        const out = await api("POST", "/api/v1/contacts/import", { body: await file.text(), type: "text/csv" });
        alertBox("ok", `已导入 ${out.rows} 行：新建 ${out.created}，更新 ${out.updated}。`);
        await load(false);
      } catch (e) { problem(e); }
      ev.target.value = "";
    });
    await load(false);
  }

  // ---- 用户详情 ------------------------------------------------------------------------------
  const COMPUTED = [["source_channel", "来源渠道"], ["last_channel", "最近渠道"], ["source_campaign_id", "来源活动"],
    ["referrer_external_id", "邀请人"], ["first_seen_at", "首次访问"], ["last_seen_at", "最近访问"],
    ["days_since_last_activity", "未活跃天数"], ["orders_count", "订单数"], ["gmv_cents", "GMV"], ["aov_cents", "客单价"],
    ["last_order_at", "最近下单"], ["invites_made", "邀请人数"], ["invites_qualified", "有效邀请"], ["rfm_class", "RFM 分类"]];
  // Chinese names of the events operators meet most (others show their own name).
  const EVENT_ZH = { page_view: "浏览页面", visit: "访问", click: "点击链接", signup: "注册", identify: "识别身份",
    purchase: "下单", refund: "退款", share: "分享", campaign_joined: "参加活动", group_routed: "分配社群",
    group_joined: "入群", group_left: "退群", group_message: "群发言", group_violation: "群违规",
    community_view: "查看社群页", segment_entered: "进入人群", segment_exited: "离开人群",
    journey_step: "旅程步骤", journey_split: "旅程分流", journey_completed: "完成旅程", journey_exited: "退出旅程" };
  const SOURCE_ZH = { event: "事件", campaign_join: "参加活动", invite: "邀请", invited_by: "被邀请", help: "助力", reward: "奖励", tag: "标签" };
  function kv(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) dl.append(h("dt", { text: k }), h("dd", { text: dash(v) }));
  }
  async function pageContactDetail() {
    const ref = $("#cd").dataset.ref;
    const [c, tags] = await Promise.all([api("GET", "/api/v1/contacts/" + encodeURIComponent(ref)), loadTags()]);
    $("#cd-title").textContent = `用户 ${c.external_id}`;
    kv($("#cd-identity"), [["用户 ID", c.external_id], ["昵称", c.nickname], ["手机号", c.phone], ["邮箱", c.email],
      ["创建时间", fmtTime(c.created_at)], ["敏感信息", c.pii_masked ? "已脱敏（当前角色无权查看）" : "明文"]]);
    const cm = c.computed;
    kv($("#cd-computed"), COMPUTED.map(([k, label]) => [label,
      k.endsWith("_at") ? fmtTime(cm[k]) : k.endsWith("_cents") ? yuan(cm[k]) : cm[k]]));
    kv($("#cd-attrs"), Object.entries(c.attributes));
    $("#cd-segments").replaceChildren(...(c.segments.length ? c.segments.map((s) => h("li", {},
      h("a", { href: "/admin/contacts?segment=" + encodeURIComponent(s.id), text: s.name }),
      h("span", { class: "sub", text: ` ${s.source === "manual_add" ? "手动加入" : "条件匹配"} · ${fmtTime(s.since)} 起` })))
      : [h("li", { class: "hint", text: "不在任何人群中" })]));
    $("#cd-aliases").replaceChildren(...c.aliases.map((a) => h("li", { text: `${a.kind}: ${a.value}` })));
    const drawTags = (list) => $("#cd-tags").replaceChildren(...list.map((t) => h("span", {}, chip(t),
      h("button", { type: "button", class: "link", text: "×", title: "移除", onclick: async () => {
        try { await api("DELETE", `/api/v1/contacts/${c.id}/tags/${t.id}`); location.reload(); } catch (e) { problem(e); }
      } }))));
    drawTags(c.tags);
    $("#cd-tag-pick").replaceChildren(...tags.filter((t) => t.kind === "manual").map((t) => h("option", { value: t.id, text: t.name })));
    $("#cd-tag-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { await api("POST", `/api/v1/contacts/${c.id}/tags`, { json: { tag_ids: [$("#cd-tag-pick").value] } }); location.reload(); } catch (e) { problem(e); }
    });
    let cursor = null;
    async function more() {
      const p = new URLSearchParams({ limit: "50" });
      if (cursor) p.set("cursor", cursor);
      const page = await api("GET", `/api/v1/contacts/${c.id}/timeline?` + p);
      for (const it of page.items) {
        const extra = [it.channel && `渠道 ${it.channel}`, it.revenue != null && yuan(it.revenue), it.campaign_id && `活动 ${it.campaign_id}`].filter(Boolean).join(" · ");
        $("#cd-timeline").append(h("li", { class: "tl-" + it.source },
          h("time", { text: fmtTime(it.ts) }), h("span", { class: "badge", text: SOURCE_ZH[it.source] || it.source }),
          h("b", { text: it.source === "event" ? EVENT_ZH[it.title] || it.title : it.title }),
          extra ? h("span", { class: "sub", text: extra }) : null));
      }
      cursor = page.next_cursor;
      $("#cd-more").hidden = !cursor;
    }
    $("#cd-more").addEventListener("click", () => more().catch(problem));
    await more();
  }

  // ---- 标签 ----------------------------------------------------------------------------------
  async function pageTags() {
    async function load() {
      const [tags, groups] = await Promise.all([loadTags(), api("GET", "/api/v1/tag-groups")]);
      const names = Object.fromEntries(groups.items.map((g) => [g.id, g.name]));
      $("#tg-group").replaceChildren(h("option", { value: "", text: "不分组" }), ...groups.items.map((g) => h("option", { value: g.id, text: g.name })));
      $("#bulk-tag").replaceChildren(...tags.filter((t) => t.kind === "manual").map((t) => h("option", { value: t.id, text: t.name })));
      const segments = await api("GET", "/api/v1/segments?limit=200");
      $("#bulk-segment").replaceChildren(h("option", { value: "", text: "（不使用人群）" }),
        ...segments.items.map((s) => h("option", { value: s.id, text: `${s.name}（${s.size.toLocaleString("zh-CN")} 人）` })));
      $("#tg-table tbody").replaceChildren(...tags.map((t) => h("tr", {},
        h("td", {}, chip(t)), h("td", { text: dash(names[t.group_id]) }), h("td", { text: t.kind === "rule" ? "规则" : "手动" }),
        h("td", {}, h("a", { href: "/admin/contacts?tag=" + t.id, text: String(t.contacts_count) })),
        h("td", {}, h("button", { type: "button", class: "link", text: "编辑", onclick: () => startEdit(t) }), " ",
          h("button", { type: "button", class: "link", text: "删除", onclick: async () => {
          if (!confirm(`删除标签“${t.name}”？拥有它的 ${t.contacts_count} 位用户将失去该标签。`)) return;
          try { await api("DELETE", "/api/v1/tags/" + t.id); await load(); } catch (e) { problem(e); }
        } })))));
      $("#tg-empty").hidden = tags.length > 0;
    }
    // The 新建标签 form also edits one tag (name, colour, group): 编辑 fills it in.
    let editingTag = null;
    const form = $("#tg-form");
    const submitButton = form.querySelector("button[type=submit]");
    function stopEdit() {
      editingTag = null;
      form.reset();
      submitButton.textContent = "创建标签";
      $("#tg-cancel").hidden = true;
    }
    function startEdit(t) {
      editingTag = t;
      form.elements.name.value = t.name;
      form.elements.color.value = t.color;
      form.elements.group_id.value = t.group_id || "";
      submitButton.textContent = `保存对“${t.name}”的修改`;
      $("#tg-cancel").hidden = false;
      form.elements.name.focus();
    }
    $("#tg-cancel").addEventListener("click", stopEdit);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const body = { name: fd.get("name"), color: fd.get("color"), group_id: fd.get("group_id") || null };
      try {
        if (editingTag) {
          await api("PATCH", "/api/v1/tags/" + encodeURIComponent(editingTag.id), { json: body });
          alertBox("ok", `已修改标签“${body.name}”`);
        } else {
          await api("POST", "/api/v1/tags", { json: body });
          alertBox("ok", "已创建标签");
        }
        stopEdit(); await load();
      } catch (e) { problem(e); }
    });
    $("#tgg-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { await api("POST", "/api/v1/tag-groups", { json: { name: new FormData(ev.target).get("name") } }); ev.target.reset(); await load(); } catch (e) { problem(e); }
    });
    $("#bulk-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(ev.target);
      const file = fd.get("file");
      try {
        let out;
        if (file && file.size) {
          out = await api("POST", `/api/v1/tags/bulk.csv?tag_id=${encodeURIComponent(fd.get("tag_id"))}&action=${fd.get("action")}`, { body: await file.text(), type: "text/csv" });
        } else {
          const ids = String(fd.get("ids") || "").split(/\s+/).filter(Boolean);
          out = await api("POST", "/api/v1/tags/bulk", { json: { tag_ids: [fd.get("tag_id")], action: fd.get("action"),
            external_ids: ids, segment_id: fd.get("segment_id") || null } });
        }
        alertBox("ok", `完成：${out.contacts} 位用户，变更 ${out.changed} 条。`);
        await load();
      } catch (e) { problem(e); }
    });
    await load();
  }

  const page = document.body.dataset.page;
  const run = page === "contacts" && $("#cd") ? pageContactDetail : { contacts: pageContacts, tags: pageTags }[page];
  if (run) {
    // A tag or segment filter can arrive in the URL (标签 page → its holders; a profile's
    // 所属人群 → the segment's members).
    const query = new URLSearchParams(location.search);
    const preset = [["tag", "#ct-tag"], ["segment", "#ct-segment"]].filter(([k, sel]) => query.get(k) && $(sel));
    const go = () => run().catch(problem).finally(() => document.body.setAttribute("data-people-ready", "1"));
    if (preset.length) {
      run().then(() => { for (const [k, sel] of preset) $(sel).value = query.get(k); $("#ct-form").requestSubmit(); }).catch(problem)
        .finally(() => document.body.setAttribute("data-people-ready", "1"));
    } else go();
  }
})();
