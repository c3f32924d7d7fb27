// 渠道 page: configure channels, send a test message, quiet hours, the staff task inbox.
// Values reach the page through textContent / setAttribute only.
"use strict";
(() => {
  const KEY = "liebian.apiKey";
  const $ = (sel, root = document) => root.querySelector(sel);
  const KINDS = { wecom_robot: "企业微信群机器人", webhook: "Webhook", smtp: "邮件", sms: "短信",
    personal_wechat: "个人微信", wecom_customer: "企业微信客户" };
  const STATUS = { sent: ["已发送", "ok"], failed: ["发送失败", "bad"], deferred: ["稍后发送", "warn"],
    suppressed: ["未发送", "muted"], pending_staff: ["待员工发送", "warn"] };
  const REASONS = { opted_out: "用户已退订", frequency_cap: "超过频率上限", monthly_cap: "超过每月上限",
    no_address: "用户没有联系方式", quiet_hours: "免打扰时段", channel_disabled: "渠道已停用",
    in_flight: "正在发送" };
  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) if (kid != null && kid !== false) node.append(kid instanceof Node ? kid : String(kid));
    return node;
  }
  async function api(method, path, json) {
    const headers = { Authorization: "Bearer " + (sessionStorage.getItem(KEY) || "") };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json), cache: "no-store" });
    const data = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = (data && data.error) || { message: resp.statusText };
      const e = new Error(err.message || "请求失败");
      e.details = err.details;
      throw e;
    }
    return data;
  }
  function alertBox(kind, text) {
    const box = $("#alert");
    box.className = "alert " + kind;
    box.textContent = text;
    box.hidden = false;
  }
  function problem(e) {
    const field = e.details && e.details.field;
    alertBox("error", e.message + (field ? `（字段：${field}）` : ""));
  }
  const tz = () => { try { return JSON.parse(sessionStorage.getItem("liebian.workspace") || "{}").timezone || "Asia/Shanghai"; } catch (_) { return "Asia/Shanghai"; } };
  function fmtTime(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat("zh-CN", { timeZone: tz(), month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  function outcomeText(o) {
    const [label] = STATUS[o.status] || [o.status];
    const why = o.reason ? `：${REASONS[o.reason] || o.reason}` : "";
    const when = o.deferred_until ? `，${fmtTime(o.deferred_until)} 后` : "";
    return `测试消息${label}${why}${when}${o.error && o.status === "failed" ? `（${o.error}）` : ""}`;
  }

  function configOf(fd) {
    const kind = fd.get("kind");
    const v = (k) => (String(fd.get(k) || "").trim() || undefined);
    if (kind === "wecom_robot") return [{ url: v("robot_url") }, undefined];
    if (kind === "webhook") return [{ url: v("url") }, undefined];
    if (kind === "smtp") {
      const port = v("port");
      return [{ host: v("host"), port: port ? Number(port) : undefined, security: v("security"),
        username: v("username"), from_address: v("from_address"), from_name: v("from_name") }, v("password")];
    }
    if (kind === "sms") return [{ url: v("sms_url"), lookup_url: v("lookup_url"), app_id: v("app_id"), sign_name: v("sign_name") }, v("sms_secret")];
    return [{ assignee: v("assignee") }, undefined];
  }

  function card(c, reload) {
    const result = h("p", { class: "hint ch-result" });
    const contact = h("input", { name: "contact_id", maxlength: "128", placeholder: "测试用户 ID（邮件、短信、个人微信必填）" });
    const send = async () => {
      try {
        const body = contact.value.trim() ? { contact_id: contact.value.trim() } : {};
        const out = await api("POST", `/api/v1/channels/${encodeURIComponent(c.id)}/test`, body);
        result.textContent = outcomeText(out);
        result.dataset.status = out.status;
        if (out.status === "pending_staff") await loadTasks();
      } catch (e) { problem(e); }
    };
    const toggle = async () => {
      try {
        if (c.active) await api("POST", `/api/v1/channels/${encodeURIComponent(c.id)}/disable`);
        else await api("PATCH", `/api/v1/channels/${encodeURIComponent(c.id)}`, { active: true });
        await reload();
      } catch (e) { problem(e); }
    };
    const target = c.config.url || c.config.host || c.config.assignee || "";
    return h("section", { class: "card ch-card", "data-id": c.id },
      h("h2", {}, c.name, " ", h("span", { class: "badge " + (c.active ? "ok" : "muted"), text: c.active ? "启用" : "已停用" })),
      h("p", { class: "hint" }, `${KINDS[c.kind] || c.kind}`, target ? ` · ${target}` : "",
        c.has_secret ? ` · 密钥 ${c.secret_hint || "已保存"}` : "",
        c.cap_count ? ` · 每 ${c.cap_hours} 小时最多 ${c.cap_count} 条` : "",
        c.monthly_cap != null ? ` · 每月最多 ${c.monthly_cap} 条` : ""),
      h("div", { class: "row" }, contact,
        h("button", { type: "button", class: "primary ch-test", onclick: send, disabled: !c.active, text: "发送测试消息" }),
        h("button", { type: "button", onclick: toggle, text: c.active ? "停用" : "启用" })),
      result);
  }

  async function loadChannels() {
    const res = await api("GET", "/api/v1/channels");
    $("#ch-list").replaceChildren(...res.items.map((c) => card(c, loadChannels)));
    $("#ch-empty").hidden = res.items.length > 0;
  }

  async function loadTasks() {
    const res = await api("GET", "/api/v1/staff-tasks?limit=50");
    $("#ch-task-rows").replaceChildren(...res.items.map((t) => h("tr", { "data-id": t.id },
      h("td", { text: t.title }), h("td", { text: t.body || "—" }), h("td", { text: t.assignee || "—" }),
      h("td", { text: fmtTime(t.created_at) }),
      h("td", {}, h("button", { type: "button", text: "已完成", onclick: async () => {
        try { await api("POST", `/api/v1/staff-tasks/${encodeURIComponent(t.id)}/done`, {}); await loadTasks(); }
        catch (e) { problem(e); }
      } })))));
    $("#ch-task-empty").hidden = res.items.length > 0;
  }

  async function pageChannels() {
    const showKind = () => {
      for (const fs of document.querySelectorAll("fieldset.kind")) fs.hidden = fs.dataset.kind !== $("#ch-kind").value;
    };
    $("#ch-kind").addEventListener("change", showKind);
    showKind();
    $("#ch-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(ev.target);
      const [config, secret] = configOf(fd);
      const cap = String(fd.get("cap_count") || "").trim();
      const body = { kind: fd.get("kind"), name: String(fd.get("name") || "").trim(),
        config: JSON.parse(JSON.stringify(config)), cap_count: cap ? Number(cap) : null,
        cap_hours: Number(fd.get("cap_hours") || 24) };
      if (secret) body.secret = secret;
      try {
        const created = await api("POST", "/api/v1/channels", body);
        alertBox("ok", `已添加渠道「${created.name}」。`);
        if (created.secret) { $("#ch-secret-value").textContent = created.secret; $("#ch-secret").hidden = false; }
        ev.target.reset();
        showKind();
        $("#ch-create-box").open = false;
        await loadChannels();
      } catch (e) { problem(e); }
    });
    $("#ch-secret-hide").addEventListener("click", () => { $("#ch-secret-value").textContent = ""; $("#ch-secret").hidden = true; });
    const quiet = await api("GET", "/api/v1/channel-settings");
    const qf = $("#ch-quiet-form");
    qf.elements.quiet_enabled.checked = quiet.quiet_enabled;
    qf.elements.quiet_start.value = quiet.quiet_start;
    qf.elements.quiet_end.value = quiet.quiet_end;
    qf.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const out = await api("PUT", "/api/v1/channel-settings", { quiet_enabled: qf.elements.quiet_enabled.checked,
          quiet_start: qf.elements.quiet_start.value, quiet_end: qf.elements.quiet_end.value });
        alertBox("ok", out.quiet_enabled ? `免打扰时段已保存：${out.quiet_start}–${out.quiet_end}（${out.timezone}）` : "已关闭免打扰时段");
      } catch (e) { problem(e); }
    });
    await loadChannels();
    await loadTasks();
  }

  if (document.body.dataset.page === "channels") {
    pageChannels().catch(problem).finally(() => document.body.setAttribute("data-channels-ready", "1"));
  }
})();
