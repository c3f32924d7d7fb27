// liebian operator console. Vanilla JS, no build step, no framework.
// Every value from the API reaches the page through textContent or setAttribute (never
// innerHTML), so a link title like "<img onerror=…>" is shown as text.
"use strict";
(() => {
  const KEY = "liebian.apiKey"; // sessionStorage: gone when the tab closes
  const WS = "liebian.workspace";
  const $ = (sel, root = document) => root.querySelector(sel);

  // ---- DOM helpers ------------------------------------------------------------------------
  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      // CSSOM, never a style attribute: the console's CSP (style-src 'self') refuses inline
      // style attributes but lets script set properties, e.g. { "--tag-color": "#2f6fed" }.
      else if (k === "style") for (const [name, value] of Object.entries(v)) node.style.setProperty(name, String(value));
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid != null && kid !== false) node.append(kid instanceof Node ? kid : String(kid));
    }
    return node;
  }
  // Only http(s) becomes a clickable href: a stored "javascript:" URL must never run.
  function safeHref(url) {
    try {
      const u = new URL(url, location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (_) { return null; }
  }
  const extLink = (url, text) => {
    const href = safeHref(url);
    return href ? h("a", { href, target: "_blank", rel: "noopener noreferrer", text: text || url }) : h("span", { text: url });
  };
  const options = (pairs, current) =>
    pairs.map(([v, label]) => h("option", { value: v, text: label, selected: String(v) === String(current) }));
  const badge = (text, kind) => h("span", { class: "badge " + kind, text });
  const dash = (v) => (v == null || v === "" ? "—" : String(v));

  // ---- workspace, time and numbers --------------------------------------------------------
  function workspace() {
    try { return JSON.parse(sessionStorage.getItem(WS) || "{}"); } catch (_) { return {}; }
  }
  const tz = () => workspace().timezone || "Asia/Shanghai";
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    try {
      return new Intl.DateTimeFormat("zh-CN", { timeZone: tz(), year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(d);
    } catch (_) { return d.toLocaleString("zh-CN"); }
  }
  // 'YYYY-MM-DD' of an instant in the workspace time zone (en-CA formats dates that way).
  const localDate = (d) => new Intl.DateTimeFormat("en-CA", { timeZone: tz() }).format(d);
  // <input type=datetime-local> is the browser's local time; the API wants an instant.
  const isoFromLocal = (v) => (v ? new Date(v).toISOString() : null);
  const pct = (x) => (x == null ? "—" : (x * 100).toFixed(1) + "%");
  const yuan = (fen) => (fen == null ? "—" : "¥" + (fen / 100).toFixed(2));
  const num = (n) => (n == null ? "—" : Number(n).toLocaleString("zh-CN"));

  // ---- API --------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      Object.assign(this, { status, code, details });
    }
  }
  async function api(method, path, opts = {}) {
    const headers = { Authorization: "Bearer " + (opts.key || sessionStorage.getItem(KEY) || "") };
    let body;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      body = opts.body;
      if (opts.type) headers["Content-Type"] = opts.type;
    }
    let resp;
    try {
      resp = await fetch(path, { method, headers, body, cache: "no-store" });
    } catch (_) {
      throw new ApiError(0, "network", "无法连接服务器，请检查网络后重试。", null);
    }
    if (resp.status === 401 && !opts.key) {
      // The key was revoked or the tab lost it: back to sign-in, then return here.
      signOut(location.pathname);
      throw new ApiError(401, "unauthorized", "登录已失效，请重新登录。", null);
    }
    if (!resp.ok) {
      let err = {};
      try { err = (await resp.json()).error || {}; } catch (_) { /* not JSON */ }
      throw new ApiError(resp.status, err.code || "http_" + resp.status, err.message || resp.statusText, err.details);
    }
    if (opts.raw) return resp;
    return resp.status === 204 ? null : resp.json();
  }

  // ---- alerts -----------------------------------------------------------------------------
  const STATUS_ZH = { 0: "网络错误", 400: "请求有误", 401: "密钥无效或已撤销", 403: "没有权限",
    404: "未找到", 409: "冲突", 410: "已失效", 413: "内容太大", 422: "输入有误，请修改后重试",
    429: "操作太频繁，请稍后再试" };
  const FIELD_ZH = { url: "目标网址", slug: "后缀", title: "标题", channel: "渠道", tags: "标签",
    expires_at: "过期时间", expired_url: "过期后跳转", max_clicks: "最多点击次数", password: "访问密码",
    allowed_platforms: "平台", host: "域名", name: "名称", capacity: "容量", reason: "原因",
    topics: "订阅的事件", description: "备注", external_id: "用户 ID", campaign_id: "活动", status: "状态" };
  // What to do, in Chinese, for the errors operators meet most; the API's own message follows.
  const CODE_ZH = {
    unauthorized: () => "密钥无效或已撤销，请检查后重新粘贴。",
    forbidden: () => "当前密钥的角色没有这个权限，请换用管理员密钥。",
    slug_taken: () => "这个后缀已被占用，请换一个，或留空自动生成。",
    reserved_slug: () => "这个后缀是系统保留词，请换一个。",
    unsupported_image_type: () => "请上传 PNG、JPEG 或 WebP 图片。",
    image_too_large: () => "图片太大，请压缩到 5MB 以内再上传。",
    image_dimensions: () => "图片尺寸不合适：每边需 300–4096 像素，建议 750×1334。",
    invalid_image: () => "文件无法识别为图片，请重新导出后上传。",
    invalid_url: () => "网址需以 http:// 或 https:// 开头。",
    invalid_host: () => "请填写域名本身，如 s.example.com（不带 http:// 和路径）。",
    domain_taken: () => "这个域名已经添加过了。",
    bad_csv: () => "CSV 需要表头行（至少有 url 列），并以 UTF-8 编码保存。",
    bulk_rejected: () => "有错误的行，整批都没有导入。请按下面的行号修改后重新上传。",
    unknown_event: (d) => `这些事件在本工作区还没有数据：${((d && d.events) || []).join("、")}。请检查事件名。`,
    invalid_request: () => "请按下面的提示修改后重试。",
    invalid_webhook_url: () => "请检查接收地址：需以 https:// 或 http:// 开头，是公网可访问的地址，不含用户名和密码。",
    invalid_topics: () => "请从列表中选择要订阅的事件。",
    webhook_inactive: () => "这个 Webhook 已停用，请先启用再发送测试。",
    delivery_delivered: () => "这条投递已经成功，无需重试。",
    not_reviewable: () => "这条邀请的状态已变化，不能再审核，请刷新页面。",
    nothing_to_pay: (d) => "没有可打款的现金奖励：都已在批次中，或未达最低提现金额" + (d && d.below_minimum ? `（${d.below_minimum} 人未达到，留待下次）` : "") + "。",
    line_already_decided: () => "这一行已标记过结果，不能改成相反的结果，请刷新页面。",
  };
  const fieldZh = (f) => (f ? String(f).split(".").map((p) => FIELD_ZH[p] || p).join(".") : "");
  function describe(d) {
    if (d && typeof d === "object") {
      if ("row" in d) return `第 ${d.row} 行${d.field ? "（" + fieldZh(d.field) + "）" : ""}：${d.message}`;
      if ("field" in d) return `${fieldZh(d.field) || "请求"}：${d.problem || d.message || ""}`;
      return JSON.stringify(d);
    }
    return String(d);
  }
  function showAlert(kind, title, message, items) {
    const box = $("#alert");
    box.replaceChildren(h("button", { type: "button", class: "link close", "aria-label": "关闭", text: "×",
      onclick: () => { box.hidden = true; } }), h("strong", { text: title }), message ? " " + message : "");
    if (items && items.length) box.append(h("ul", null, items.slice(0, 200).map((t) => h("li", { text: t }))));
    box.className = "alert " + kind;
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }
  function showError(err) {
    if (!(err instanceof ApiError)) console.error(err);
    const title = err instanceof ApiError ? (STATUS_ZH[err.status] || "操作失败") + "：" : "出错了：";
    const details = err && err.details;
    const hint = err && CODE_ZH[err.code];
    const message = hint ? `${hint(details)}（${err.message}）` : err.message || String(err);
    const items = Array.isArray(details) ? details.map(describe)
      // A bare {field} adds nothing to the message above it (and its label may not fit the page).
      : details && details.field && (details.problem || details.message) ? [describe(details)] : [];
    showAlert("error", title, message, items);
  }
  const showOk = (message) => showAlert("ok", "成功：", message);
  const hideAlert = () => { $("#alert").hidden = true; };

  // Run an action with its button disabled, errors shown in the alert box.
  async function busy(button, fn) {
    if (button) button.disabled = true;
    try { return await fn(); } catch (err) { showError(err); } finally { if (button) button.disabled = false; }
  }
  function onSubmit(form, fn) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      hideAlert();
      busy(form.querySelector("button[type=submit]"), () => fn(new FormData(form), form));
    });
  }
  const text = (fd, name) => String(fd.get(name) || "").trim();
  const splitList = (s) => s.split(/[,，、;\s|]+/).map((t) => t.trim()).filter(Boolean);

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  async function blobUrl(path) {
    const resp = await api("GET", path, { raw: true });
    return URL.createObjectURL(await resp.blob());
  }

  // ---- sign-in / sign-out -----------------------------------------------------------------
  function signOut(returnTo) {
    if (!sessionStorage.getItem(KEY)) document.cookie = "lb_csrf=; Max-Age=0; path=/; SameSite=Lax";
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(WS);
    const next = returnTo && returnTo !== "/admin/login" ? "?next=" + encodeURIComponent(returnTo) : "";
    location.replace("/admin/login" + next);
  }
  function nextTarget() {
    const next = new URLSearchParams(location.search).get("next") || "";
    // Only our own pages: an attacker's ?next=//evil.example must not become a redirect.
    return /^\/admin(\/[\w\-/]*)?$/.test(next) ? next : "/admin";
  }
  function pageLogin() {
    if (sessionStorage.getItem(KEY)) { location.replace(nextTarget()); return; }
    onSubmit($("#login-form"), async (fd) => {
      const key = text(fd, "key");
      const ws = await api("GET", "/api/v1/workspace", { key });
      sessionStorage.setItem(KEY, key);
      sessionStorage.setItem(WS, JSON.stringify(ws));
      location.replace(nextTarget());
    });
  }

  // Follows the cursor to count a list; stops at `cap` so a huge workspace stays fast.
  async function countAll(path, cap = 2000) {
    let n = 0, cursor = null;
    do {
      const q = new URLSearchParams({ limit: "200" });
      if (cursor) q.set("cursor", cursor);
      const pageData = await api("GET", `${path}?${q}`);
      n += pageData.items.length;
      cursor = pageData.next_cursor;
    } while (cursor && n < cap);
    return cursor ? n + "+" : String(n);
  }

  // ---- 概览 -------------------------------------------------------------------------------
  async function pageOverview() {
    const ws = await api("GET", "/api/v1/workspace");
    sessionStorage.setItem(WS, JSON.stringify(ws));
    $("#ov-ws").textContent = ws.name;
    $("#ws-name").textContent = ws.name;
    $("#ov-tz").textContent = ws.timezone;
    const fill = (sel, promise) => promise.then((v) => { $(sel).textContent = v; },
      (err) => { $(sel).textContent = "—"; showError(err); });
    fill("#ov-links", countAll("/api/v1/links"));
    fill("#ov-live", countAll("/api/v1/live-codes"));
    const now = new Date();
    const today = api("POST", "/api/v1/analytics/counts", { json: {
      from: new Date(now.getTime() - 2 * 86400e3).toISOString(),
      to: new Date(now.getTime() + 60e3).toISOString(), events: ["click"], interval: "day", tz: ws.timezone,
    } }).then((res) => res.rows.find((r) => r.bucket.startsWith(localDate(now))) || { count: 0, unique_users: 0 },
      // A workspace whose links were never clicked has no "click" event yet: that is zero.
      (err) => { if (err.code === "unknown_event") return { count: 0, unique_users: 0 }; throw err; });
    fill("#ov-clicks", today.then((r) => num(r.count)));
    fill("#ov-visitors", today.then((r) => num(r.unique_users)));
  }

  // ---- 短链 -------------------------------------------------------------------------------
  const PLATFORM_ZH = { wechat: "微信", wecom: "企业微信", qq: "QQ", alipay: "支付宝", douyin: "抖音",
    weibo: "微博", dingtalk: "钉钉", feishu: "飞书", xiaohongshu: "小红书", browser: "普通浏览器",
    bot: "爬虫/机器人", other: "其他" };
  const platformZh = (p) => PLATFORM_ZH[p] || p;

  function linkPayload(fd) {
    const p = { url: text(fd, "url") };
    for (const k of ["slug", "title", "channel", "expired_url", "password"]) if (text(fd, k)) p[k] = text(fd, k);
    const tags = splitList(text(fd, "tags"));
    if (tags.length) p.tags = tags;
    const utm = {};
    for (const k of ["source", "medium", "campaign", "term", "content"]) if (text(fd, "utm_" + k)) utm[k] = text(fd, "utm_" + k);
    if (Object.keys(utm).length) p.utm = utm;
    if (text(fd, "expires_at")) p.expires_at = isoFromLocal(text(fd, "expires_at"));
    if (text(fd, "max_clicks")) p.max_clicks = Number(text(fd, "max_clicks"));
    const platforms = fd.getAll("allowed_platforms");
    if (platforms.length) p.allowed_platforms = platforms;
    p.browser_guide = fd.get("browser_guide") === "on";
    return p;
  }

  function linkRow(link, reload) {
    const detail = "/admin/links/" + encodeURIComponent(link.id);
    return h("tr", { "data-id": link.id },
      h("td", null, extLink(link.short_url, "/" + link.slug), h("div", { class: "sub", text: link.short_url })),
      h("td", null, link.title ? h("div", { text: link.title }) : null, h("div", { class: "sub", text: link.url })),
      h("td", { text: dash(link.channel) }),
      h("td", null, link.tags.map((t) => h("span", { class: "tag", text: t }))),
      h("td", { text: fmtTime(link.created_at) }),
      h("td", null, h("a", { href: detail, text: "详情" }), " ",
        h("button", { type: "button", class: "link", text: "删除", onclick: (ev) => busy(ev.target, async () => {
          if (!confirm(`确定删除短链 /${link.slug}？删除后扫码和点击都会失效。`)) return;
          await api("DELETE", "/api/v1/links/" + encodeURIComponent(link.id));
          showOk(`已删除 /${link.slug}`);
          reload();
        }) })));
  }

  function pageLinks() {
    const tbody = $("#links-table tbody"), more = $("#links-more"), filter = $("#filter-form");
    let cursor = null;
    async function load(reset) {
      const q = new URLSearchParams({ limit: "50" });
      for (const k of ["q", "channel", "tag"]) { const v = filter.elements[k].value.trim(); if (v) q.set(k, v); }
      if (!reset && cursor) q.set("cursor", cursor);
      const res = await api("GET", "/api/v1/links?" + q);
      if (reset) tbody.replaceChildren();
      for (const link of res.items) tbody.append(linkRow(link, () => busy(null, () => load(true))));
      cursor = res.next_cursor;
      more.hidden = !cursor;
      $("#links-empty").hidden = tbody.children.length > 0;
    }
    onSubmit(filter, () => load(true));
    filter.addEventListener("reset", () => setTimeout(() => busy(null, () => load(true))));
    more.addEventListener("click", () => busy(more, () => load(false)));
    onSubmit($("#link-form"), async (fd, form) => {
      const link = await api("POST", "/api/v1/links", { json: linkPayload(fd) });
      form.reset();
      showOk(`已创建短链 ${link.short_url}`);
      await load(true);
    });
    onSubmit($("#csv-form"), async (fd, form) => {
      const out = $("#csv-result");
      out.replaceChildren();
      try {
        const res = await api("POST", "/api/v1/links/bulk/csv", { body: fd.get("file"), type: "text/csv" });
        form.reset();
        showOk(`已导入 ${res.created} 条短链`);
        await load(true);
      } catch (err) {
        if (Array.isArray(err.details) && err.details.length) {
          out.append(h("div", { class: "table-wrap" }, h("table", null,
            h("thead", null, h("tr", null, h("th", { text: "行号" }), h("th", { text: "字段" }), h("th", { text: "问题" }))),
            h("tbody", null, err.details.map((d) => h("tr", null, h("td", { class: "num", text: d.row }),
              h("td", { text: fieldZh(d.field) || "—" }), h("td", { text: d.message })))))));
        }
        throw err;
      }
    });
    $("#csv-export").addEventListener("click", (ev) => busy(ev.target, async () => {
      const resp = await api("GET", "/api/v1/links/export.csv", { raw: true });
      download(await resp.blob(), `links-${localDate(new Date())}.csv`);
    }));
    return load(true);
  }

  // ---- 短链详情 ----------------------------------------------------------------------------
  async function pageLinkDetail() {
    const id = $("#link-detail").dataset.linkId;
    const base = "/api/v1/links/" + encodeURIComponent(id);
    const link = await api("GET", base);
    $("#ld-title").textContent = link.title || "/" + link.slug;
    const utm = Object.entries(link.utm || {}).filter(([, v]) => v).map(([k, v]) => `utm_${k}=${v}`).join("  ");
    const rows = [
      ["短链", extLink(link.short_url)], ["目标网址", extLink(link.url)], ["渠道", dash(link.channel)],
      ["标签", link.tags.length ? link.tags.map((t) => h("span", { class: "tag", text: t })) : "—"],
      ["UTM", dash(utm)], ["过期时间", fmtTime(link.expires_at)], ["过期后跳转", dash(link.expired_url)],
      ["最多点击", dash(link.max_clicks)], ["访问密码", link.has_password ? "已设置" : "无"],
      ["平台限制", link.allowed_platforms ? link.allowed_platforms.map(platformZh).join("、") : "不限"],
      ["浏览器引导", link.browser_guide ? "开启" : "关闭"],
      ["iOS / 安卓", [link.ios_url, link.android_url].filter(Boolean).join(" / ") || "—"],
      ["A/B 分流", link.variants ? link.variants.length + " 个版本" : "无"],
      ["创建时间", fmtTime(link.created_at)],
    ];
    $("#ld-fields").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", null, v)]));
    $("#ld-copy").addEventListener("click", () => navigator.clipboard.writeText(link.short_url)
      .then(() => showOk("已复制 " + link.short_url), () => showAlert("error", "无法复制，请手动复制：", link.short_url)));
    $("#ld-delete").addEventListener("click", (ev) => busy(ev.target, async () => {
      if (!confirm(`确定删除短链 /${link.slug}？删除后扫码和点击都会失效。`)) return;
      await api("DELETE", base);
      location.replace("/admin/links");
    }));
    // The QR endpoint needs the Bearer header, so an <img src> cannot fetch it: use a blob URL.
    busy(null, async () => {
      const url = await blobUrl(base + "/qr?size=480");
      $("#ld-qr").src = url;
      const a = $("#ld-qr-download");
      a.href = url;
      a.download = `qr-${link.slug}.png`;
    });
    const stats = await api("GET", base + "/stats");
    $("#st-clicks").textContent = num(stats.clicks);
    $("#st-uv").textContent = num(stats.unique_visitors);
    $("#st-qr").textContent = num(stats.qr_scans);
    $("#st-bots").textContent = num(stats.bot_clicks);
    $("#st-tz").textContent = stats.timezone;
    const fillTable = (sel, entries, label) => {
      const body = $(sel + " tbody");
      body.replaceChildren(...entries.map(([k, v]) => h("tr", null, h("td", { text: label(k) }), h("td", { class: "num", text: num(v) }))));
      if (!entries.length) body.append(h("tr", null, h("td", { colspan: 2, class: "empty", text: "暂无数据" })));
    };
    fillTable("#st-platform", Object.entries(stats.by_platform).sort((a, b) => b[1] - a[1]), platformZh);
    fillTable("#st-day", Object.entries(stats.by_day).sort().reverse(), String);
  }

  // ---- 活码 -------------------------------------------------------------------------------
  const TARGET_STATUS = { active: ["可用", "ok"], full: ["已满", "warn"], expired: ["已过期", "bad"], disabled: ["已停用", "muted"] };
  const readDataUrl = (file) => new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
  async function targetPayload(row) {
    const get = (n) => row.querySelector(`[name=${n}]`);
    const t = { label: get("label").value.trim(), capacity: Number(get("capacity").value) };
    const url = get("url").value.trim();
    const file = get("image").files[0];
    if (file) t.image = await readDataUrl(file);
    else if (url) t.url = url;
    if (get("expires_at").value) t.expires_at = isoFromLocal(get("expires_at").value);
    return t;
  }

  function liveCodeCard(lc, reload) {
    const path = "/api/v1/live-codes/" + encodeURIComponent(lc.id);
    const extra = h("div");
    const badges = [];
    if (lc.usable_targets === 0) badges.push(badge("无可用目标", "bad"));
    else if (lc.alert_below && lc.usable_targets < lc.alert_below) badges.push(badge("可用目标不足", "warn"));
    else badges.push(badge("正常", "ok"));
    const rows = lc.targets.map((t) => {
      const [label, kind] = TARGET_STATUS[t.status] || [t.status, "muted"];
      const toggle = h("button", { type: "button", class: "link small", text: t.enabled ? "停用" : "启用",
        onclick: (ev) => busy(ev.target, async () => {
          await api("PATCH", `${path}/targets/${encodeURIComponent(t.id)}`, { json: { enabled: !t.enabled } });
          await reload();
        }) });
      return h("tr", null,
        h("td", { class: "num", text: t.position + 1 }),
        h("td", null, t.label || "—", t.id === lc.current_target_id ? [" ", badge("当前", "ok")] : null,
          h("div", { class: "sub" }, t.kind === "url" ? extLink(t.url) : "群二维码图片")),
        h("td", { class: "num", text: `${num(t.scans)} / ${num(t.capacity)}` }),
        h("td", { class: "num", text: num(t.remaining) }),
        h("td", null, badge(label, kind)),
        h("td", { text: fmtTime(t.expires_at) }),
        h("td", null, toggle));
    });
    const addForm = h("form", { class: "inline-form" },
      h("input", { name: "label", placeholder: "新目标名称，如 4群" }),
      h("input", { name: "url", type: "url", placeholder: "网址（或到上方新建时上传图片）", required: true }),
      h("input", { name: "capacity", type: "number", min: 1, value: 200, required: true, "aria-label": "容量" }),
      h("button", { type: "submit", text: "添加目标" }));
    onSubmit(addForm, async (fd) => {
      await api("POST", path + "/targets", { json: { label: text(fd, "label"), url: text(fd, "url"), capacity: Number(text(fd, "capacity")) } });
      showOk(`已为「${lc.name}」添加目标`);
      await reload();
    });
    const qrBtn = h("button", { type: "button", class: "small", text: "二维码", onclick: (ev) => busy(ev.target, async () => {
      const url = await blobUrl(path + "/qr?size=480");
      extra.replaceChildren(h("div", { class: "qr" }, h("img", { src: url, alt: lc.name + " 二维码" }),
        h("p", null, h("a", { href: url, download: `livecode-${lc.slug}.png`, text: "下载二维码 PNG" }))));
    }) });
    const alertsBtn = h("button", { type: "button", class: "small", text: "提醒记录", onclick: (ev) => busy(ev.target, async () => {
      const res = await api("GET", path + "/alerts?limit=20");
      extra.replaceChildren(res.items.length ? h("ul", null, res.items.map((a) => h("li", {
        text: `${fmtTime(a.created_at)}：可用目标 ${a.usable} 个，低于阈值 ${a.threshold}` +
          (a.delivered_at ? "（已通知）" : "（未通知）") })))
        : h("p", { class: "hint", text: "暂无提醒。" }));
    }) });
    const delBtn = h("button", { type: "button", class: "small danger", text: "删除", onclick: (ev) => busy(ev.target, async () => {
      if (!confirm(`确定删除活码「${lc.name}」？已印刷的二维码将无法使用。`)) return;
      await api("DELETE", path);
      showOk(`已删除活码「${lc.name}」`);
      await reload();
    }) });
    return h("section", { class: "card lc-card", "data-id": lc.id },
      h("h3", null, lc.name, " ", badges),
      h("div", { class: "meta" }, extLink(lc.short_url), ` · 渠道 ${dash(lc.channel)} · 可用目标 ${lc.usable_targets} 个 · 总扫码 ${num(lc.total_scans)} · 提醒阈值 ${lc.alert_below}`,
        lc.alerted_at ? ` · 最近提醒 ${fmtTime(lc.alerted_at)}` : ""),
      h("div", { class: "row" }, qrBtn, alertsBtn, delBtn),
      extra,
      h("div", { class: "table-wrap" }, h("table", null,
        h("thead", null, h("tr", null, ["顺序", "目标", "扫码/容量", "剩余", "状态", "过期时间", ""].map((t) => h("th", { text: t })))),
        h("tbody", null, rows.length ? rows : h("tr", null, h("td", { colspan: 7, class: "empty", text: "还没有目标" }))))),
      addForm);
  }

  function pageLiveCodes() {
    const list = $("#lc-list"), more = $("#lc-more"), targets = $("#lc-targets");
    let cursor = null;
    async function load(reset) {
      const q = new URLSearchParams({ limit: "20" });
      if (!reset && cursor) q.set("cursor", cursor);
      const res = await api("GET", "/api/v1/live-codes?" + q);
      if (reset) list.replaceChildren();
      for (const lc of res.items) list.append(liveCodeCard(lc, () => load(true)));
      cursor = res.next_cursor;
      more.hidden = !cursor;
      $("#lc-empty").hidden = list.children.length > 0;
    }
    const addTarget = () => {
      const row = $("#lc-target-row").content.firstElementChild.cloneNode(true);
      row.querySelector(".remove-target").addEventListener("click", () => row.remove());
      targets.append(row);
    };
    $("#lc-add-target").addEventListener("click", addTarget);
    addTarget();
    more.addEventListener("click", () => busy(more, () => load(false)));
    onSubmit($("#lc-form"), async (fd, form) => {
      const p = { name: text(fd, "name"), alert_below: Number(text(fd, "alert_below") || 0) };
      for (const k of ["slug", "channel"]) if (text(fd, k)) p[k] = text(fd, k);
      p.targets = await Promise.all([...targets.children].map(targetPayload));
      const lc = await api("POST", "/api/v1/live-codes", { json: p });
      form.reset();
      targets.replaceChildren();
      addTarget();
      showOk(`已创建活码「${lc.name}」：${lc.short_url}`);
      await load(true);
    });
    return load(true);
  }

  // ---- 域名 -------------------------------------------------------------------------------
  const DOMAIN_STATUS = { healthy: ["正常", "ok"], blocked: ["已封禁", "bad"], suspect: ["疑似异常", "warn"] };
  function domainRow(d, reload) {
    const path = "/api/v1/domains/" + encodeURIComponent(d.id);
    const [label, kind] = DOMAIN_STATUS[d.status] || [d.status, "muted"];
    const actions = h("td");
    if (d.status === "blocked") {
      actions.append(h("button", { type: "button", class: "small", text: "解除封禁", onclick: (ev) => busy(ev.target, async () => {
        await api("POST", path + "/unblock", { json: { note: "" } });
        showOk(`已解除封禁 ${d.host}`);
        await reload();
      }) }));
    } else {
      const form = h("form", { class: "inline-form", hidden: true },
        h("input", { name: "reason", required: true, maxlength: 500, placeholder: "原因，如 微信内提示停止访问" }),
        h("button", { type: "submit", class: "small danger", text: "确认封禁" }));
      onSubmit(form, async (fd) => {
        await api("POST", path + "/block", { json: { reason: text(fd, "reason") } });
        showOk(`已标记 ${d.host} 为封禁`);
        await reload();
      });
      actions.append(h("button", { type: "button", class: "small", text: "封禁", onclick: () => { form.hidden = !form.hidden; } }));
      if (!d.is_primary) {
        actions.append(" ", h("button", { type: "button", class: "small", text: "设为主域名", onclick: (ev) => busy(ev.target, async () => {
          await api("PATCH", path, { json: { is_primary: true } });
          showOk(`${d.host} 已设为主域名`);
          await reload();
        }) }));
      }
      actions.append(form);
    }
    return h("tr", { "data-id": d.id },
      h("td", { text: d.host }), h("td", null, badge(label, kind)),
      h("td", { text: d.is_primary ? "是" : "" }), h("td", { text: dash(d.note) }),
      h("td", { text: fmtTime(d.status_changed_at) }), actions);
  }
  function pageDomains() {
    const tbody = $("#domains-table tbody");
    async function load() {
      const res = await api("GET", "/api/v1/domains");
      tbody.replaceChildren(...res.items.map((d) => domainRow(d, load)));
      $("#domains-empty").hidden = res.items.length > 0;
    }
    onSubmit($("#domain-form"), async (fd, form) => {
      const d = await api("POST", "/api/v1/domains", { json: { host: text(fd, "host"), is_primary: fd.get("is_primary") === "on" } });
      form.reset();
      showOk(`已添加域名 ${d.host}`);
      await load();
    });
    return load();
  }

  // ---- 数据 -------------------------------------------------------------------------------
  function rangeOf(form) {
    const from = form.elements.from.value, to = form.elements.to.value;
    // Whole local days: [from 00:00, the day after `to` 00:00).
    const end = new Date(to + "T00:00:00");
    end.setDate(end.getDate() + 1);
    return { from: new Date(from + "T00:00:00").toISOString(), to: end.toISOString() };
  }
  function pageAnalytics() {
    const range = $("#range-form");
    const today = new Date();
    range.elements.to.value = localDate(today);
    range.elements.from.value = localDate(new Date(today.getTime() - 6 * 86400e3));
    const metrics = async () => {
      const m = await api("POST", "/api/v1/analytics/metrics", { json: { ...rangeOf(range), tz: tz() } });
      const cards = [["活跃用户", num(m.active_users)], ["转化率", pct(m.conversion_rate)], ["订单数", num(m.orders)],
        ["成交额 GMV", yuan(m.gmv)], ["客单价", yuan(m.aov)], ["人均收入 ARPU", yuan(m.arpu)],
        ["入群率", pct(m.group_join_rate)], ["次日留存", pct(m.day1_retention)], ["7 日留存", pct(m.day7_retention)],
        ["邀请率", pct(m.invite_rate)], ["分享率", pct(m.share_rate)]];
      $("#metrics-cards").replaceChildren(...cards.map(([k, v]) => h("div", { class: "stat" }, h("span", { class: "label", text: k }), h("b", { text: v }))));
    };
    onSubmit(range, metrics);
    onSubmit($("#funnel-form"), async (fd) => {
      const steps = splitList(text(fd, "steps")).map((event) => ({ event }));
      const res = await api("POST", "/api/v1/analytics/funnel", { json: { ...rangeOf(range), steps,
        window_seconds: Number(text(fd, "window_hours")) * 3600 } });
      const table = $("#funnel-table");
      const dur = (s) => (s == null ? "—" : s < 3600 ? Math.round(s / 60) + " 分钟" : (s / 3600).toFixed(1) + " 小时");
      $("tbody", table).replaceChildren(...res.steps.map((s, i) => h("tr", null, h("td", { class: "num", text: i + 1 }),
        h("td", { text: s.event }), h("td", { class: "num", text: num(s.count) }), h("td", { class: "num", text: pct(s.conversion_rate) }),
        h("td", { class: "num", text: pct(s.step_conversion_rate) }), h("td", { class: "num", text: dur(s.median_seconds_to_convert) }))));
      table.hidden = false;
    });
    onSubmit($("#retention-form"), async (fd) => {
      const periods = Number(text(fd, "periods") || 7);
      const res = await api("POST", "/api/v1/analytics/retention", { json: { ...rangeOf(range), start_event: text(fd, "start_event"),
        return_event: text(fd, "return_event"), period: text(fd, "period"), periods, tz: tz() } });
      const table = $("#retention-table");
      const unit = text(fd, "period") === "week" ? "周" : "天";
      const width = Math.max(periods, ...res.cohorts.map((c) => c.retained.length));
      $("thead", table).replaceChildren(h("tr", null, h("th", { text: "起始" }), h("th", { class: "num", text: "人数" }),
        Array.from({ length: width }, (_, i) => h("th", { class: "num", text: `第 ${i} ${unit}` }))));
      $("tbody", table).replaceChildren(...res.cohorts.map((c) => h("tr", null, h("td", { text: c.start }), h("td", { class: "num", text: num(c.size) }),
        Array.from({ length: width }, (_, i) => h("td", { class: "num", text: c.retained[i] == null ? "" : `${c.retained[i]}（${c.size ? pct(c.retained[i] / c.size) : "—"}）` })))));
      if (!res.cohorts.length) $("tbody", table).append(h("tr", null, h("td", { colspan: width + 2, class: "empty", text: "这段时间没有符合条件的用户" })));
      table.hidden = false;
    });
    return metrics();
  }

  // ---- 活动 -------------------------------------------------------------------------------
  const CAMPAIGN_TYPE = { invite: "邀请有礼", group_buy: "拼团", assist: "助力/砍价", distribution: "分销", poster: "海报裂变" };
  const CAMPAIGN_STATUS = { draft: ["草稿", "muted"], active: ["进行中", "ok"], paused: ["已暂停", "warn"], ended: ["已结束", "muted"] };
  const INDUSTRY = { education: "教育", ecommerce: "电商", catering: "餐饮" };
  function pageCampaigns() {
    const tbody = $("#cmp-table tbody"), more = $("#cmp-more");
    let cursor = null;
    async function load(reset) {
      const q = new URLSearchParams({ limit: "50" });
      if (!reset && cursor) q.set("cursor", cursor);
      const res = await api("GET", "/api/v1/campaigns?" + q);
      if (reset) tbody.replaceChildren();
      for (const c of res.items) {
        const [label, kind] = CAMPAIGN_STATUS[c.status] || [c.status, "muted"];
        tbody.append(h("tr", null, h("td", null, h("a", { href: "/admin/campaigns/" + encodeURIComponent(c.id), text: c.name })), h("td", { text: CAMPAIGN_TYPE[c.type] || c.type }),
          h("td", null, badge(label, kind)), h("td", { text: dash(c.template) }), h("td", { text: fmtTime(c.created_at) }),
          h("td", null, (c.lint_warnings || []).map((w) => h("div", { class: "sub", text: `⚠ ${w.message}${w.suggestion ? "（建议：" + w.suggestion + "）" : ""}` })))));
      }
      cursor = res.next_cursor;
      more.hidden = !cursor;
      $("#cmp-empty").hidden = tbody.children.length > 0;
    }
    async function templates(industry, type) {
      const res = await api("GET", "/api/v1/campaigns/templates" + (industry ? "?industry=" + encodeURIComponent(industry) : ""));
      const shown = res.items.filter((t) => !type || t.type === type);
      if (!shown.length) { $("#tpl-list").replaceChildren(h("p", { class: "empty", text: "没有这个行业和玩法的模板，换个条件试试。" })); return; }
      $("#tpl-list").replaceChildren(...shown.map((t) => {
        const form = h("form", { class: "inline-form" },
          h("input", { name: "name", maxlength: 200, placeholder: t.name, "aria-label": "活动名称（可选）" }),
          h("button", { type: "submit", class: "primary small", text: "用此模板创建" }));
        onSubmit(form, async (fd) => {
          // A draft: the next step sets rewards, stock, dates and copy, then launches.
          const body = { template: t.key, status: "draft" };
          if (text(fd, "name")) body.name = text(fd, "name");
          const c = await api("POST", "/api/v1/campaigns/from-template", { json: body });
          location.href = "/admin/campaigns/" + encodeURIComponent(c.id);
        });
        return h("div", { class: "tpl" }, h("strong", { text: t.name }),
          h("div", null, badge(INDUSTRY[t.industry] || t.industry, "muted"), " ", badge(CAMPAIGN_TYPE[t.type] || t.type, "ok")),
          h("p", { text: t.description }), form);
      }));
    }
    onSubmit($("#tpl-filter"), (fd) => templates(text(fd, "industry"), text(fd, "type")));
    more.addEventListener("click", () => busy(more, () => load(false)));
    return Promise.all([templates("", ""), load(true)]);
  }

  // ---- 活动详情：状态、规则（无 JSON）、分享素材、实时数据、裂变树 ------------------------------
  const CHANNEL_ZH = { wechat_group: "微信群", moments: "朋友圈", official_account: "公众号", wecom: "企业微信", sms: "短信", "(direct)": "直接进入" };
  const ACTION_ZH = { create: "创建", launch: "上线", pause: "暂停", resume: "恢复", end: "提前结束", extend: "延期",
    add_stock: "加库存", edit: "修改", duplicate: "复制自", poster: "海报", auto_end: "到期自动结束", scheduled: "每周定时开期", schedule: "添加每周定时" };
  const REWARD_ZH = { pending: ["待发放", "warn"], approved: ["已确认", "ok"], issued: ["已发放", "ok"], reversed: ["已撤销", "muted"] };
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...kids) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const kid of kids) if (kid != null) node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return node;
  }
  // Horizontal bars: [label, value, note]. Drawn here, no chart library, no CDN.
  function barChart(rows, width = 520) {
    const max = Math.max(1, ...rows.map((r) => r[1]));
    const rowH = 30, labelW = 90, height = rows.length * rowH + 4;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", class: "chart" });
    rows.forEach(([label, value, note], i) => {
      const y = i * rowH + 4, w = Math.max(2, ((width - labelW - 120) * value) / max);
      chart.append(svg("text", { x: 0, y: y + 17, "font-size": 13 }, label),
        svg("rect", { x: labelW, y, width: w, height: rowH - 8, rx: 3, fill: "#fd7e14" }),
        svg("text", { x: labelW + w + 6, y: y + 17, "font-size": 13 }, `${num(value)}${note ? "  " + note : ""}`));
    });
    return chart;
  }
  // Columns per day for one series.
  function dayChart(days, key, width = 720) {
    const height = 160, pad = 24, max = Math.max(1, ...days.map((d) => d[key]));
    const step = (width - pad) / Math.max(1, days.length), chart = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, width: "100%", role: "img", class: "chart" });
    days.forEach((d, i) => {
      const hgt = ((height - pad) * d[key]) / max, x = pad + i * step;
      chart.append(svg("rect", { x: x + 2, y: height - hgt, width: Math.max(2, step - 4), height: hgt, fill: "#fd7e14" }),
        svg("text", { x: x + 2, y: height - hgt - 4, "font-size": 11 }, num(d[key])),
        svg("text", { x: x + 2, y: height + 14, "font-size": 11 }, d.day.slice(5)));
    });
    return chart;
  }
  const toYuan = (fen) => (fen / 100).toString();
  const toFen = (v) => Math.round(Number(v) * 100);
  function field(label, name, value, attrs = {}) {
    return h("label", null, label, h("input", { name, value: value == null ? "" : value, ...attrs }));
  }
  // The config as form fields (money in 元), and back into a config on submit.
  function ruleFields(type, c) {
    const money = { type: "number", step: "0.01", min: "0" };
    const out = [];
    const rewardFields = (prefix, r, title) => {
      if (!r) return;
      out.push(field(`${title}名称`, `${prefix}.name`, r.name, { maxlength: 64 }));
      out.push(r.kind === "coupon" || r.kind === "cash"
        ? field(`${title}金额（元）`, `${prefix}.amount_yuan`, toYuan(r.amount), money)
        : field(`${title}数量`, `${prefix}.amount`, r.amount, { type: "number", min: 1 }));
    };
    if (type === "invite" || type === "poster") {
      (c.tiers || []).forEach((t, i) => {
        out.push(field(`第 ${i + 1} 档：邀请人数`, `tiers.${i}.invites`, t.invites, { type: "number", min: 1 }));
        rewardFields(`tiers.${i}.reward`, t.reward, `第 ${i + 1} 档奖励`);
      });
      rewardFields("invitee_reward", c.invitee_reward, "新朋友奖励");
      if (type === "invite") {
        out.push(field("每人最多领取轮数", "max_rewards_per_participant", c.max_rewards_per_participant, { type: "number", min: 1 }));
        out.push(field("每轮递减（%）", "cycle_decrease_pct", (c.cycle_decrease_bp || 0) / 100, { type: "number", min: 0, max: 90, step: "1" }));
        out.push(field("预算（元，留空不限）", "budget_yuan", c.budget == null ? "" : toYuan(c.budget), money));
      }
    } else if (type === "group_buy") {
      out.push(field("商品名称", "product_name", c.product_name, { maxlength: 64 }));
      out.push(field("原价（元）", "original_price_yuan", toYuan(c.original_price), money));
      (c.tiers || []).forEach((t, i) => {
        out.push(field(`第 ${i + 1} 档：成团人数`, `tiers.${i}.size`, t.size, { type: "number", min: 2 }));
        out.push(field(`第 ${i + 1} 档：拼团价（元）`, `tiers.${i}.price_yuan`, toYuan(t.price), money));
      });
      out.push(field("成团时限（小时）", "time_limit_hours", c.time_limit_hours, { type: "number", min: 1 }));
    } else if (type === "assist") {
      if (c.mode === "unlock") out.push(field("需要好友助力人数", "helpers_required", c.helpers_required, { type: "number", min: 1 }));
      rewardFields("reward", c.reward, "奖励");
    } else if (type === "distribution") {
      (c.levels || []).forEach((l, i) => out.push(field(`第 ${i + 1} 级佣金（%）`, `levels.${i}.rate_pct`, l.rate_bp / 100, { type: "number", min: 0.01, step: "0.01" })));
    }
    if (type !== "distribution") out.push(field("库存（留空不限）", "stock", c.stock == null ? "" : c.stock, { type: "number", min: 1 }));
    out.push(field("活动天数", "duration_days", c.duration_days, { type: "number", min: 1 }));
    return out;
  }
  function applyRules(config, fd) {
    const c = JSON.parse(JSON.stringify(config));
    const setPath = (path, value) => {
      const parts = path.split(".");
      let node = c;
      for (const p of parts.slice(0, -1)) node = node[p];
      node[parts[parts.length - 1]] = value;
    };
    for (const [name, raw] of fd.entries()) {
      const v = String(raw).trim();
      if (name === "name" || name === "share_text") continue;
      if (name === "cycle_decrease_pct") c.cycle_decrease_bp = Math.round(Number(v || 0) * 100);
      else if (name === "budget_yuan") c.budget = v === "" ? null : toFen(v);
      else if (name === "stock") c.stock = v === "" ? null : Number(v);
      else if (name.endsWith("_yuan")) setPath(name.slice(0, -5), toFen(v));
      else if (name.endsWith(".rate_pct")) setPath(name.replace(".rate_pct", ".rate_bp"), Math.round(Number(v) * 100));
      else if (name.endsWith(".name") || name === "product_name") setPath(name, v);
      else setPath(name, Number(v));
    }
    return c;
  }
  function lintList(findings) {
    return findings.map((f) => h("div", { class: "sub " + (f.severity === "error" ? "bad" : "warn") },
      badge(f.severity === "error" ? "不能上线" : "提醒", f.severity === "error" ? "bad" : "warn"),
      ` ${fieldZh(f.field)}「${f.matched}」${f.message}；建议：${f.suggestion}`));
  }

  function pageCampaignDetail() {
    const id = $("#campaign-detail").dataset.campaignId;
    const base = "/api/v1/campaigns/" + encodeURIComponent(id);
    let campaign = null;
    function show(c) {
      campaign = c;
      const scheduled = c.status === "active" && new Date(c.starts_at) > new Date();
      const [label, kind] = scheduled ? ["已定时，未开始", "warn"] : CAMPAIGN_STATUS[c.status] || [c.status, "muted"];
      $("#cd-title").textContent = c.name;
      $("#cd-status").replaceChildren(badge(label, kind));
      $("#cd-type").textContent = `${CAMPAIGN_TYPE[c.type] || c.type} · 规则第 ${c.config_version} 版`;
      $("#cd-dates").textContent = `${fmtTime(c.starts_at)} — ${fmtTime(c.ends_at)}`;
      $("#cd-launch").hidden = c.status !== "draft";
      $("#cd-schedule").hidden = c.status !== "draft";
      $("#cd-pause").hidden = c.status !== "active";
      $("#cd-resume").hidden = c.status !== "paused";
      $("#cd-end").hidden = c.status === "ended";
      $("#cd-extend").hidden = c.status === "ended";
      $("#cd-stock").hidden = c.status === "ended" || c.config.stock == null;
      const form = $("#cd-rules");
      $("#cd-rule-fields").replaceChildren(...ruleFields(c.type, c.config));
      form.elements.name.value = c.name;
      form.elements.share_text.value = c.share_text;
      $("#cd-lint").replaceChildren(...lintList(c.lint_warnings || []));
    }
    const act = (button, path, body) => button.addEventListener("click", () => busy(button, async () => {
      show(await api("POST", base + path, body ? { json: body } : {}));
      showOk("已" + button.textContent);
      await refresh();
    }));
    act($("#cd-launch"), "/launch");
    act($("#cd-pause"), "/pause");
    act($("#cd-resume"), "/resume");
    $("#cd-end").addEventListener("click", () => {
      if (confirm("提前结束后不能再恢复，已获得的奖励保留。确定结束？")) busy($("#cd-end"), async () => { show(await api("POST", base + "/end")); await refresh(); });
    });
    $("#cd-duplicate").addEventListener("click", () => busy($("#cd-duplicate"), async () => {
      const copy = await api("POST", base + "/duplicate");
      location.href = "/admin/campaigns/" + encodeURIComponent(copy.id);
    }));
    // Times are sent without a zone: the server reads them in the workspace's time zone.
    onSubmit($("#cd-schedule"), async (fd) => {
      const body = { starts_at: text(fd, "starts_at") };
      if (text(fd, "ends_at")) body.ends_at = text(fd, "ends_at");
      show(await api("POST", base + "/launch", { json: body })); showOk("已定时上线"); await refresh();
    });
    onSubmit($("#cd-extend"), async (fd) => { show(await api("POST", base + "/extend", { json: { ends_at: text(fd, "ends_at") } })); showOk("已延期"); await refresh(); });
    async function weekly() {
      const res = await api("GET", "/api/v1/campaign-schedules?campaign_id=" + encodeURIComponent(id));
      $("#cd-weekly-list tbody").replaceChildren(...res.items.map((s) => {
        const toggle = h("button", { type: "button", class: "small", text: s.enabled ? "暂停" : "恢复" });
        toggle.addEventListener("click", () => busy(toggle, async () => { await api("PATCH", "/api/v1/campaign-schedules/" + s.id, { json: { enabled: !s.enabled } }); await weekly(); }));
        const del = h("button", { type: "button", class: "small danger", text: "删除" });
        del.addEventListener("click", () => { if (confirm("删除后不再按周开新一期；已开的活动不受影响。")) busy(del, async () => { await api("DELETE", "/api/v1/campaign-schedules/" + s.id); await weekly(); }); });
        return h("tr", null, h("td", { text: s.name }), h("td", { text: `${s.description}（${s.timezone}）` }),
          h("td", { text: s.enabled ? fmtTime(s.next_run_at) : "—" }),
          h("td", null, s.runs.length ? s.runs.map((r) => h("div", null, h("a", { href: "/admin/campaigns/" + encodeURIComponent(r.campaign_id), text: r.occurrence }))) : "—"),
          h("td", null, badge(s.enabled ? "启用" : "已暂停", s.enabled ? "ok" : "muted")), h("td", { class: "actions" }, toggle, " ", del));
      }));
    }
    onSubmit($("#cd-weekly"), async (fd) => {
      await api("POST", base + "/schedules", { json: { name: text(fd, "name"), weekday: Number(text(fd, "weekday")),
        start_time: text(fd, "start_time"), duration_minutes: Math.round(Number(text(fd, "hours")) * 60) } });
      showOk("已添加每周定时");
      await Promise.all([weekly(), lists()]);
    });
    onSubmit($("#cd-stock"), async (fd, form) => { show(await api("POST", base + "/stock", { json: { units: Number(text(fd, "units")) } })); form.reset(); showOk("已增加库存"); await refresh(); });
    onSubmit($("#cd-rules"), async (fd) => {
      const body = { name: text(fd, "name"), share_text: text(fd, "share_text"), config: applyRules(campaign.config, fd) };
      show(await api("PATCH", base, { json: body }));
      showOk(`已保存（规则第 ${campaign.config_version} 版）`);
      await refresh();
    });
    // Inline lint as the operator types (debounced).
    let timer = null;
    $("#cd-rules").addEventListener("input", (ev) => {
      if (!["name", "share_text"].includes(ev.target.name)) return;
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const f = $("#cd-rules").elements;
        const res = await api("POST", "/api/v1/campaigns/lint", { json: { name: f.name.value, share_text: f.share_text.value } });
        $("#cd-lint").replaceChildren(...lintList(res.findings));
      }, 300);
    });

    // 海报设计: every edit redraws the poster preview (debounced); the phone frame shows the
    // participant page with the form's unsaved name and copy. Saving stores the design.
    let posterDesign = null, posterTimer = null, phoneLink = null;
    const pf = $("#cd-poster");
    function readDesign() {
      const e = pf.elements;
      return { headline: e.headline.value.trim(), body: e.body.value.trim(), caption: e.caption.value.trim(),
        background_color: e.background_color.value.toUpperCase(), text_color: e.text_color.value.toUpperCase(),
        accent_color: e.accent_color.value.toUpperCase(), gradient_to: e.gradient.checked ? e.gradient_to.value.toUpperCase() : null,
        background_image: posterDesign ? posterDesign.background_image : null };
    }
    function fillDesign(d) {
      posterDesign = d;
      const e = pf.elements;
      e.headline.value = d.headline; e.body.value = d.body; e.caption.value = d.caption;
      e.background_color.value = d.background_color.toLowerCase(); e.text_color.value = d.text_color.toLowerCase();
      e.accent_color.value = d.accent_color.toLowerCase(); e.gradient.checked = d.gradient_to != null;
      e.gradient_to.value = (d.gradient_to || "#ffd8a8").toLowerCase();
      $("#cd-poster-bg").textContent = d.background_image ? "已使用上传的背景图" : "未上传背景图，使用背景色";
      $("#cd-poster-clear-bg").hidden = !d.background_image;
    }
    async function drawPoster() {
      const design = readDesign();
      const resp = await api("POST", base + "/poster/preview", { json: design, raw: true });
      const img = $("#cd-poster-img");
      if (img.src) URL.revokeObjectURL(img.src);
      img.src = URL.createObjectURL(await resp.blob());
      const lint = await api("POST", "/api/v1/campaigns/lint", { json: { headline: design.headline, body: design.body } });
      $("#cd-poster-lint").replaceChildren(...lintList(lint.findings.map((f) => ({ ...f, field: f.field.replace("config.", "poster.") }))));
    }
    async function drawPhone() {
      if (!phoneLink || phoneLink.expires_at * 1000 < Date.now() + 60000) phoneLink = await api("GET", base + "/preview-link");
      const f = $("#cd-rules").elements, q = new URLSearchParams();
      if (f.name.value.trim()) q.set("name", f.name.value.trim());
      if (f.share_text.value.trim()) q.set("share_text", f.share_text.value.trim());
      $("#cd-phone").src = phoneLink.url + (q.toString() ? "&" + q : "");
    }
    const redraw = () => { clearTimeout(posterTimer); posterTimer = setTimeout(() => Promise.all([drawPoster(), drawPhone()]).catch(showError), 350); };
    pf.addEventListener("input", (ev) => { if (ev.target.name !== "background_file") redraw(); });
    $("#cd-rules").addEventListener("input", (ev) => { if (["name", "share_text"].includes(ev.target.name)) redraw(); });
    pf.elements.background_file.addEventListener("change", (ev) => busy(null, async () => {
      const file = ev.target.files[0];
      if (!file) return;
      const up = await api("POST", base + "/poster/background", { body: file, type: file.type || "application/octet-stream" });
      posterDesign = { ...readDesign(), background_image: up.name };
      $("#cd-poster-bg").textContent = `已上传 ${up.width}×${up.height}，保存后生效`;
      $("#cd-poster-clear-bg").hidden = false;
      await drawPoster();
    }).finally(() => { ev.target.value = ""; }));
    $("#cd-poster-clear-bg").addEventListener("click", () => {
      posterDesign = { ...readDesign(), background_image: null };
      $("#cd-poster-bg").textContent = "未上传背景图，使用背景色";
      $("#cd-poster-clear-bg").hidden = true;
      redraw();
    });
    onSubmit(pf, async () => {
      const saved = await api("PUT", base + "/poster", { json: readDesign() });
      fillDesign(saved.design);
      showOk(saved.lint.ok ? "海报已保存" : "海报已保存（有提醒，见下方）");
      await Promise.all([drawPoster(), lists()]);
    });
    async function posterDesigner() {
      fillDesign((await api("GET", base + "/poster")).design);
      await Promise.all([drawPoster(), drawPhone()]);
    }

    async function shareKit() {
      const kit = await api("GET", base + "/share-kit");
      $("#cd-share").replaceChildren(...await Promise.all(kit.channels.map(async (ch) => {
        const img = h("img", { alt: `${CHANNEL_ZH[ch.channel] || ch.channel}二维码`, width: 160, height: 160 });
        blobUrl(ch.qr_url).then((u) => { img.src = u; }, () => {});
        return h("div", { class: "tpl" }, h("strong", { text: CHANNEL_ZH[ch.channel] || ch.channel }),
          h("p", { class: "sub share-url", text: ch.entry_url }), img,
          h("button", { type: "button", class: "small", text: "复制链接",
            onclick: () => navigator.clipboard.writeText(ch.entry_url).then(() => showOk("已复制链接"), () => {}) }));
      })));
    }
    async function dashboard() {
      const d = await api("GET", base + "/dashboard");
      $("#cd-tz").textContent = d.tz;
      const t = d.totals;
      $("#cd-stats").replaceChildren(...[["参与人数", num(t.participants)], ["分享率", pct(t.share_rate)], ["点击率", pct(t.click_rate)],
        ["转化率（/分享）", pct(t.conversion_rate_per_share)], ["转化率（/点击）", pct(t.conversion_rate_per_click)], ["K 值", t.k_factor == null ? "—" : t.k_factor],
        ["好友参与", num(t.friend_joins)], ["奖励成本", yuan(t.reward_cost)], ["带来 GMV", yuan(t.gmv)], ["ROI", pct(t.roi)], ["获客成本", yuan(t.cac)]]
        .map(([k, v]) => h("div", { class: "stat" }, h("span", { class: "label", text: k }), h("b", { text: String(v) }))));
      $("#cd-funnel").replaceChildren(barChart(d.funnel.map((s) => [s.label, s.people, s.rate_from_previous == null ? "" : pct(s.rate_from_previous)])));
      $("#cd-channels tbody").replaceChildren(...d.by_channel.map((c) => h("tr", null, h("td", { text: CHANNEL_ZH[c.channel] || c.channel }),
        h("td", { text: num(c.participants) }), h("td", { text: pct(c.share_rate) }), h("td", { text: num(c.friend_joins) }), h("td", { text: dash(c.k_factor) }))));
      $("#cd-days").replaceChildren(d.by_day.length ? dayChart(d.by_day, "participants") : h("p", { class: "empty", text: "还没有数据" }));
      $("#cd-compare tbody").replaceChildren(...d.compare.map((c) => h("tr", c.current ? { class: "current" } : null,
        h("td", null, c.current ? h("strong", { text: c.name + "（本活动）" }) : h("a", { href: "/admin/campaigns/" + encodeURIComponent(c.campaign_id), text: c.name })),
        h("td", { text: fmtTime(c.starts_at) }), h("td", { text: num(c.participants) }), h("td", { text: pct(c.share_rate) }),
        h("td", { text: pct(c.click_rate) }), h("td", { text: pct(c.conversion_rate_per_share) }), h("td", { text: dash(c.k_factor) }),
        h("td", { text: yuan(c.reward_cost) }), h("td", { text: yuan(c.gmv) }), h("td", { text: pct(c.roi) }), h("td", { text: yuan(c.cac) }))));
    }
    let treeCursor = null;
    function treeNode(n) {
      const li = h("li", { "data-id": n.participant_id },
        h("span", { text: `${n.external_id || n.nickname}` }), " ",
        h("span", { class: "sub", text: `直接邀请 ${n.children} · 整支 ${n.descendants} 人 · 第 ${n.depth} 层${n.channel ? " · " + (CHANNEL_ZH[n.channel] || n.channel) : ""}` }));
      if (n.children) {
        const btn = h("button", { type: "button", class: "link small", text: "展开" });
        btn.addEventListener("click", () => busy(btn, async () => {
          const res = await api("GET", `${base}/tree?parent=${encodeURIComponent(n.participant_id)}&limit=200`);
          li.append(h("ul", null, res.items.map(treeNode)));
          btn.remove();
        }));
        li.append(" ", btn);
      }
      return li;
    }
    async function tree(reset) {
      const q = new URLSearchParams({ limit: "50" });
      if (!reset && treeCursor) q.set("cursor", treeCursor);
      const res = await api("GET", `${base}/tree?${q}`);
      if (reset) $("#cd-tree").replaceChildren();
      $("#cd-tree").append(...res.items.map(treeNode));
      $("#cd-tree-summary").textContent = `共 ${res.participants} 人，最深 ${res.max_depth} 层；带人最多：` +
        (res.widest.map((n) => `${n.external_id || n.nickname}（${n.children}）`).join("、") || "—");
      treeCursor = res.next_cursor;
      $("#cd-tree-more").hidden = !treeCursor;
    }
    $("#cd-tree-more").addEventListener("click", () => busy($("#cd-tree-more"), () => tree(false)));
    // 参与者: search by the start of the user id, filter by how they came in; each row can
    // open that person's own invite branch.
    let peopleCursor = null;
    const SOURCE_ZH = { direct: ["直接参与", "muted"], approved: ["好友邀请", "ok"], qualified: ["好友邀请·已转化", "ok"], held: ["待审核", "warn"], blocked: ["已拦截", "bad"] };
    async function people(reset) {
      const f = $("#cd-people-filter").elements, q = new URLSearchParams({ limit: "50" });
      if (f.q.value.trim()) q.set("q", f.q.value.trim());
      if (f.status.value) q.set("status", f.status.value);
      if (!reset && peopleCursor) q.set("cursor", peopleCursor);
      const res = await api("GET", `${base}/participant-list?${q}`);
      if (reset) $("#cd-people tbody").replaceChildren();
      $("#cd-people tbody").append(...res.items.map((p) => {
        const [label, kind] = SOURCE_ZH[p.status] || [p.status, "muted"];
        const branch = h("td");
        if (p.invites) {
          const btn = h("button", { type: "button", class: "link small", text: "看TA的邀请" });
          btn.addEventListener("click", () => busy(btn, async () => {
            const sub = await api("GET", `${base}/tree?parent=${encodeURIComponent(p.participant_id)}&limit=200`);
            branch.replaceChildren(h("ul", { class: "tree" }, sub.items.map(treeNode)));
          }));
          branch.append(btn);
        }
        return h("tr", null, h("td", null, p.external_id || "—", h("div", { class: "sub", text: p.nickname })), h("td", null, badge(label, kind)),
          h("td", { text: CHANNEL_ZH[p.channel] || dash(p.channel) }), h("td", { text: num(p.invites) }), h("td", { text: "第 " + p.config_version + " 版" }),
          h("td", { text: fmtTime(p.joined_at) }), branch);
      }));
      if (reset && !res.items.length) $("#cd-people tbody").append(h("tr", null, h("td", { colspan: 7, class: "empty", text: "没有符合条件的参与者" })));
      peopleCursor = res.next_cursor;
      $("#cd-people-more").hidden = !peopleCursor;
    }
    onSubmit($("#cd-people-filter"), () => people(true));
    $("#cd-people-more").addEventListener("click", () => busy($("#cd-people-more"), () => people(false)));
    const ACT_ZH = { open: ["进行中", "warn"], success: ["已成团", "ok"], unlocked: ["已解锁", "ok"], failed: ["未成团", "muted"], expired: ["已过期", "muted"] };
    async function activities() {
      if (!campaign || !["group_buy", "assist"].includes(campaign.type)) return;
      const res = await api("GET", `${base}/activities`);
      $("#cd-activities-card").hidden = false;
      $("#cd-activities-title").textContent = campaign.type === "group_buy" ? "拼团（进行中的在前）" : "助力 / 砍价（进行中的在前）";
      $("#cd-activities tbody").replaceChildren(...res.items.map((a) => {
        const [label, kind] = ACT_ZH[a.status] || [a.status, "muted"];
        return h("tr", null, h("td", { text: dash(a.owner) }), h("td", null, badge(label, kind)), h("td", { text: `${a.done} / ${a.needed}` }),
          h("td", { text: a.price == null ? "—" : yuan(a.price) }), h("td", { text: fmtTime(a.expires_at) }));
      }));
      if (!res.items.length) $("#cd-activities tbody").append(h("tr", null, h("td", { colspan: 5, class: "empty", text: "还没有" })));
    }
    async function lists() {
      const [refs, board, rewards, changes] = await Promise.all([
        api("GET", "/api/v1/referrals?limit=50&campaign_id=" + encodeURIComponent(id)),
        api("GET", base + "/leaderboard?limit=10"),
        api("GET", "/api/v1/rewards?limit=50&campaign_id=" + encodeURIComponent(id)),
        api("GET", base + "/changes?limit=50"),
      ]);
      $("#cd-referrals tbody").replaceChildren(...refs.items.map((r) => {
        const [label, kind] = REFERRAL_STATUS[r.status] || [r.status, "muted"];
        return h("tr", null, h("td", { text: `${personName(r.referrer)} → ${personName(r.referee)}` }), h("td", null, badge(label, kind)),
          h("td", null, badge(String(r.risk_score), scoreKind(r.risk_score))), h("td", { text: fmtTime(r.created_at) }));
      }));
      $("#cd-leaderboard").replaceChildren(...board.items.map((b) => h("li", { text: `${b.external_id || b.nickname}：${b.invites} 人` })));
      $("#cd-rewards tbody").replaceChildren(...rewards.items.map((r) => {
        const [label, kind] = REWARD_ZH[r.status] || [r.status, "muted"];
        return h("tr", null, h("td", { text: dash(r.external_id) }), h("td", { text: r.name }),
          h("td", { text: r.kind === "coupon" || r.kind === "cash" ? yuan(r.amount) : String(r.amount) }), h("td", null, badge(label, kind)), h("td", { text: fmtTime(r.created_at) }));
      }));
      $("#cd-changes tbody").replaceChildren(...changes.items.map((c) => h("tr", null, h("td", { text: fmtTime(c.created_at) }),
        h("td", { text: ACTION_ZH[c.action] || c.action }), h("td", { text: dash(c.config_version) }),
        h("td", { class: "sub", text: Object.keys(c.after || {}).map((k) => fieldZh(k)).join("、") }))));
    }
    async function refresh() { await Promise.all([dashboard(), tree(true), lists(), people(true), activities()]); }
    setInterval(() => { if (!document.hidden) dashboard().catch(() => {}); }, 5000);
    return (async () => {
      show(await api("GET", base));
      $("#cd-weekly").elements.name.value = campaign.name.slice(0, 100);
      await Promise.all([shareKit(), posterDesigner(), weekly(), refresh()]);
    })();
  }

  // Campaign id → name for pages whose rows carry campaign ids only; fills the filter <select>.
  async function campaignNames(select) {
    const names = {};
    let cursor = null, n = 0;
    do {
      const q = new URLSearchParams({ limit: "200" });
      if (cursor) q.set("cursor", cursor);
      const res = await api("GET", "/api/v1/campaigns?" + q);
      for (const c of res.items) names[c.id] = c.name;
      n += res.items.length;
      cursor = res.next_cursor;
    } while (cursor && n < 1000);
    if (select) select.append(...Object.entries(names).map(([id, name]) => h("option", { value: id, text: name })));
    return names;
  }
  const campaignCell = (id, names) => (id ? h("td", null, names[id] || id, names[id] ? h("div", { class: "sub", text: id }) : null)
    : h("td", { text: "—" }));

  // ---- 风控审核 ----------------------------------------------------------------------------
  const REFERRAL_STATUS = { held: ["待审核", "warn"], blocked: ["已拦截", "bad"], approved: ["已通过", "ok"],
    rejected: ["已驳回", "muted"], superseded: ["已被替代", "muted"] };
  const RISK_REASON = { self_referral: "自己邀请自己", same_visitor: "同一浏览器", same_device: "同一设备",
    same_email: "同一邮箱", same_phone: "同一手机号", same_ip_ua: "同 IP 同浏览器", same_ip: "同一 IP",
    disposable_email: "一次性邮箱", velocity: "短时间大量邀请", fast_conversion: "转化过快",
    device_crowd: "一台设备多人参与", referral_ring: "互相邀请（闭环）", refund_rate: "推荐人退款率高" };
  const STRENGTH_KIND = { strong: "bad", medium: "warn", weak: "muted" };
  const scoreKind = (s) => (s >= 80 ? "bad" : s >= 40 ? "warn" : "muted");
  const personName = (p) => (p && p.external_id) || "（已删除的用户）";

  function referralRow(r, names) {
    const tr = h("tr", { "data-id": r.id });
    const who = `${personName(r.referrer)} → ${personName(r.referee)}`;
    const path = "/api/v1/risk/reviews/" + encodeURIComponent(r.id);
    const fill = (ref) => {
      const [label, kind] = REFERRAL_STATUS[ref.status] || [ref.status, "muted"];
      const verdict = (approve) => (ev) => busy(ev.target, async () => {
        if (!approve && !confirm(`确定驳回邀请「${who}」？\n驳回会撤销这条邀请已产生的全部奖励（邀请人和被邀请人的），撤销后不能恢复。`)) return;
        const updated = await api("POST", path + (approve ? "/approve" : "/reject"));
        fill(updated);
        showOk(approve ? `已通过邀请「${who}」，奖励将按活动规则发放。` : `已驳回邀请「${who}」，它产生的奖励已撤销。`);
      });
      const actions = h("td", { class: "actions" });
      if (ref.status === "held" || ref.status === "blocked") {
        actions.append(h("button", { type: "button", class: "small primary", text: "通过", onclick: verdict(true) }), " ");
      }
      if (["held", "blocked", "approved"].includes(ref.status)) {
        actions.append(h("button", { type: "button", class: "small danger", text: "驳回", onclick: verdict(false) }));
      }
      const reasons = (ref.risk_reasons || []).map((x) => h("div", { class: "reason" },
        badge(RISK_REASON[x.code] || x.code, STRENGTH_KIND[x.strength] || "muted"), " ", h("span", { class: "sub", text: x.message || "" })));
      tr.replaceChildren(
        h("td", null, h("div", { text: who }), h("div", { class: "sub", text: ref.id })),
        campaignCell(ref.campaign_id, names),
        h("td", { class: "num" }, badge(String(ref.risk_score), scoreKind(ref.risk_score))),
        h("td", null, reasons.length ? reasons : "—"),
        h("td", null, badge(label, kind), h("div", { class: "sub", text: ref.qualified ? "已完成邀请条件" : "未完成邀请条件" })),
        h("td", { text: fmtTime(ref.created_at) }),
        actions);
      tr.dataset.status = ref.status;
    };
    fill(r);
    return tr;
  }

  async function pageReview() {
    const tbody = $("#review-table tbody"), more = $("#review-more"), filter = $("#review-filter");
    const names = await campaignNames(filter.elements.campaign_id);
    let cursor = null;
    async function load(reset) {
      const q = new URLSearchParams({ limit: "50", status: filter.elements.status.value });
      if (filter.elements.campaign_id.value) q.set("campaign_id", filter.elements.campaign_id.value);
      if (!reset && cursor) q.set("cursor", cursor);
      const res = await api("GET", "/api/v1/referrals?" + q);
      if (reset) tbody.replaceChildren();
      for (const r of res.items) tbody.append(referralRow(r, names));
      cursor = res.next_cursor;
      more.hidden = !cursor;
      $("#review-empty").hidden = tbody.children.length > 0;
    }
    onSubmit(filter, () => load(true));
    more.addEventListener("click", () => busy(more, () => load(false)));
    return load(true);
  }

  // ---- 奖励 -------------------------------------------------------------------------------
  const REWARD_STATUS = { pending: ["待确认", "muted"], approved: ["已确认", "warn"], issued: ["已发放", "ok"],
    reversed: ["已撤销", "bad"] };
  const REWARD_KIND = { coupon: "优惠券", points: "积分", gift: "礼品", cash: "现金" };
  const REWARD_REASON = { tier: "邀请达标", invitee: "新人奖励", assist: "助力完成", group_leader: "团长优惠",
    commission: "分销佣金", clawback: "退款追回", manual: "手动发放" };
  // 分 for cash and coupons (shown in 元), a count for points and gifts.
  function rewardAmount(e) {
    if (e.kind === "cash" || e.kind === "coupon") {
      return e.currency && e.currency !== "CNY" ? `${(e.amount / 100).toFixed(2)} ${e.currency}` : yuan(e.amount);
    }
    return `${num(e.amount)} ${e.kind === "points" ? "积分" : "份"}`;
  }
  function rewardRow(e, names) {
    const [label, kind] = REWARD_STATUS[e.status] || [e.status, "muted"];
    const reason = REWARD_REASON[e.reason] || (String(e.reason || "").startsWith("refund") ? "退款重算" : dash(e.reason));
    const when = e.status === "reversed" ? e.reversed_at : e.status === "issued" ? e.issued_at : e.created_at;
    return h("tr", { "data-id": e.id },
      h("td", { text: dash(e.external_id) }),
      campaignCell(e.campaign_id, names),
      h("td", null, REWARD_KIND[e.kind] || e.kind, e.name ? h("div", { class: "sub", text: e.name }) : null,
        e.coupon_code ? h("div", { class: "sub", text: "券码 " + e.coupon_code }) : null),
      h("td", { class: "num", text: rewardAmount(e) }),
      h("td", null, badge(label, kind), e.status === "reversed" && e.reversal_reason
        ? h("div", { class: "sub", text: e.reversal_reason }) : null,
        e.status === "pending" && e.available_at ? h("div", { class: "sub", text: "可结算于 " + fmtTime(e.available_at) }) : null),
      h("td", { text: reason }),
      h("td", { text: fmtTime(when) }));
  }
  async function pageRewards() {
    const tbody = $("#rw-table tbody"), more = $("#rw-more"), filter = $("#rw-filter");
    const names = await campaignNames(filter.elements.campaign_id);
    let cursor = null;
    async function load(reset) {
      const q = new URLSearchParams({ limit: "50" });
      for (const k of ["campaign_id", "external_id", "status"]) { const v = filter.elements[k].value.trim(); if (v) q.set(k, v); }
      if (!reset && cursor) q.set("cursor", cursor);
      const res = await api("GET", "/api/v1/rewards?" + q);
      if (reset) tbody.replaceChildren();
      for (const e of res.items) tbody.append(rewardRow(e, names));
      cursor = res.next_cursor;
      more.hidden = !cursor;
      $("#rw-empty").hidden = tbody.children.length > 0;
    }
    onSubmit(filter, () => load(true));
    filter.addEventListener("reset", () => setTimeout(() => busy(null, () => load(true))));
    more.addEventListener("click", () => busy(more, () => load(false)));
    await payoutBatches(filter, names);
    return load(true);
  }

  // 打款批次: each settled, unpaid cash entry is paid in exactly one batch (decision 0019).
  const LINE_STATUS = { pending: ["待打款", "warn"], paid: ["已打款", "ok"], failed: ["打款失败", "bad"] };
  const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
  const totalsText = (t) => Object.entries(t || {}).map(([cur, fen]) => (cur === "CNY" ? yuan(fen) : `${(fen / 100).toFixed(2)} ${cur}`)).join(" + ") || "—";
  async function payoutBatches(filter, names) {
    const tbody = $("#po-table tbody");
    async function preview() {
      const cid = filter.elements.campaign_id.value;
      const p = await api("GET", "/api/v1/payouts/preview" + (cid ? "?campaign_id=" + encodeURIComponent(cid) : ""));
      const below = p.lines.length - p.eligible_lines;
      $("#po-preview").textContent = `可打款 ${p.eligible_lines} 人，共 ${totalsText(p.totals)}` + (below ? `；${below} 人未达最低提现金额，留待下次` : "");
    }
    async function showLines(batch) {
      const res = await api("GET", `/api/v1/payouts/batches/${batch.id}/lines?limit=500`);
      $("#po-lines-title").textContent = `批次 ${batch.id} 的打款行`;
      const body = $("#po-lines-table tbody");
      body.replaceChildren(...res.items.map((line) => {
        const [label, kind] = LINE_STATUS[line.status] || [line.status, "muted"];
        const decide = (outcome) => async (ev) => busy(ev.target, async () => {
          hideAlert();
          let reason = null;
          if (outcome === "failed") {
            reason = prompt("打款失败的原因（如：实名不符、账户冻结）", "");
            if (reason === null) return;
          }
          await api("POST", `/api/v1/payouts/batches/${batch.id}/outcomes`, { json: {
            idempotency_key: newKey(), lines: [{ line_id: line.id, outcome, reason: reason || null }] } });
          showOk(outcome === "paid" ? "已标记为已打款。" : "已标记为打款失败，这些奖励会进入下一个批次。");
          await reload(batch.id);
        });
        return h("tr", { "data-id": line.id },
          h("td", { text: dash(line.external_id) }),
          campaignCell(line.campaign_id, names),
          h("td", { class: "num", text: line.currency === "CNY" ? yuan(line.amount) : `${line.amount_yuan} ${line.currency}` }),
          h("td", { class: "num", text: num(line.entry_count) }),
          h("td", null, badge(label, kind), line.failure_reason ? h("div", { class: "sub", text: line.failure_reason }) : null),
          h("td", null, line.status === "pending" ? [
            h("button", { type: "button", class: "link po-paid", text: "已打款", onclick: decide("paid") }),
            h("button", { type: "button", class: "link po-failed", text: "打款失败", onclick: decide("failed") })] : "—"));
      }));
      $("#po-lines").hidden = false;
    }
    function batchRow(b) {
      const progress = `已打款 ${b.lines_paid} · 失败 ${b.lines_failed} · 待打款 ${b.lines_pending}`;
      const csvButton = h("button", { type: "button", class: "link po-csv", text: "下载 CSV", onclick: (ev) => busy(ev.target, async () => {
        hideAlert();
        // Needs the Bearer header, so a plain link cannot fetch it: download through a blob URL.
        const resp = await api("GET", `/api/v1/payouts/batches/${b.id}/export.csv`, { raw: true });
        download(await resp.blob(), `payouts-${b.id}.csv`);
        showOk("已下载打款 CSV（amount_fen 为分，amount_yuan 为元）。重复下载得到的是同一批，不会重复打款。");
        await reload();
      }) });
      const allPaid = b.lines_pending ? h("button", { type: "button", class: "link po-all-paid", text: "全部标记已打款",
        onclick: (ev) => busy(ev.target, async () => {
          hideAlert();
          if (!confirm(`确认批次 ${b.id} 中 ${b.lines_pending} 行都已打款？`)) return;
          await api("POST", `/api/v1/payouts/batches/${b.id}/outcomes`, { json: { idempotency_key: newKey(), all_pending: "paid" } });
          showOk("已全部标记为已打款。");
          await reload(b.id);
        }) }) : null;
      const linesButton = h("button", { type: "button", class: "link po-lines", text: "明细", onclick: (ev) => busy(ev.target, () => showLines(b)) });
      return h("tr", { "data-id": b.id },
        h("td", null, b.id, b.note ? h("div", { class: "sub", text: b.note }) : null,
          b.campaign_id ? h("div", { class: "sub", text: names[b.campaign_id] || b.campaign_id }) : null),
        h("td", null, fmtTime(b.created_at), b.exported_at ? h("div", { class: "sub", text: `已下载 ${b.export_count} 次` }) : null),
        h("td", { class: "num", text: num(b.line_count) }),
        h("td", { class: "num", text: totalsText(b.totals) }),
        h("td", null, badge(b.status === "closed" ? "已完成" : "进行中", b.status === "closed" ? "ok" : "warn"), h("div", { class: "sub", text: progress })),
        h("td", null, csvButton, linesButton, allPaid));
    }
    async function reload(openBatch) {
      const res = await api("GET", "/api/v1/payouts/batches?limit=20");
      tbody.replaceChildren(...res.items.map(batchRow));
      $("#po-empty").hidden = res.items.length > 0;
      const open = openBatch && res.items.find((b) => b.id === openBatch);
      if (open) await showLines(open);
      await preview();
    }
    $("#po-create").addEventListener("click", (ev) => busy(ev.target, async () => {
      hideAlert();
      const cid = filter.elements.campaign_id.value;
      const batch = await api("POST", "/api/v1/payouts/batches", { json: { idempotency_key: newKey(), campaign_id: cid || null } });
      showOk(`已新建打款批次 ${batch.id}：${batch.line_count} 行，共 ${totalsText(batch.totals)}。请下载 CSV 交给财务。`);
      await reload(batch.id);
    }));
    filter.elements.campaign_id.addEventListener("change", () => busy(null, preview));
    try { await reload(); } catch (err) { if (!(err instanceof ApiError && err.status === 403)) throw err; }
  }

  // ---- Webhook ----------------------------------------------------------------------------
  const DELIVERY_STATUS = { pending: ["待投递", "warn"], delivered: ["已送达", "ok"], dead: ["失败", "bad"] };
  // "拼团失败：… (group failed on expiry)" → the Chinese part, for checkbox labels.
  const topicZh = (topics, t) => (t === "*" ? "全部事件" : ((topics[t] || t).split(" (")[0]));

  function showSecret(endpoint) {
    $("#wh-secret-for").textContent = `${endpoint.url}（${endpoint.id}）`;
    $("#wh-secret-value").textContent = endpoint.secret;
    $("#wh-secret").hidden = false;
    $("#wh-secret").scrollIntoView({ block: "nearest" });
  }

  function deliveryRow(endpointPath, d, topics, reload) {
    const [label, kind] = DELIVERY_STATUS[d.status] || [d.status, "muted"];
    const last = d.last_status_code ? "HTTP " + d.last_status_code : d.last_error || "—";
    const log = d.log.length ? h("details", null, h("summary", { text: `${d.log.length} 次尝试` }),
      h("ul", null, d.log.map((a) => h("li", { text: `#${a.number} ${fmtTime(a.at)} ` +
        (a.status_code ? "HTTP " + a.status_code : "") + (a.error ? " " + a.error : "") +
        (a.response_excerpt ? " · " + a.response_excerpt : "") })))) : h("span", { class: "sub", text: "尚未尝试" });
    const actions = h("td");
    if (d.status === "dead") {
      actions.append(h("button", { type: "button", class: "small", text: "重试", onclick: (ev) => busy(ev.target, async () => {
        await api("POST", `${endpointPath}/deliveries/${encodeURIComponent(d.id)}/retry`);
        showOk("已重新排队，稍后自动投递。");
        await reload();
      }) }));
    }
    return h("tr", { "data-id": d.id },
      h("td", { text: fmtTime(d.created_at) }),
      h("td", null, topicZh(topics, d.topic), h("div", { class: "sub", text: `${d.topic} · ${d.event_id}` })),
      h("td", null, badge(label, kind), d.status === "pending" && d.next_attempt_at
        ? h("div", { class: "sub", text: "下次 " + fmtTime(d.next_attempt_at) }) : null),
      h("td", { class: "num", text: num(d.attempts) }),
      h("td", null, h("div", { text: last }), log),
      actions);
  }

  function deliveryLog(endpointPath, box, topics) {
    const tbody = h("tbody"), more = h("button", { type: "button", hidden: true, text: "加载更多" });
    const status = h("select", { "aria-label": "投递状态" }, h("option", { value: "", text: "全部状态" }),
      Object.entries(DELIVERY_STATUS).map(([v, [t]]) => h("option", { value: v, text: t })));
    let cursor = null;
    async function load(reset) {
      const q = new URLSearchParams({ limit: "20" });
      if (status.value) q.set("status", status.value);
      if (!reset && cursor) q.set("cursor", cursor);
      const res = await api("GET", `${endpointPath}/deliveries?${q}`);
      if (reset) tbody.replaceChildren();
      for (const d of res.items) tbody.append(deliveryRow(endpointPath, d, topics, () => load(true)));
      if (!tbody.children.length) tbody.append(h("tr", null, h("td", { colspan: 6, class: "empty", text: "暂无投递记录" })));
      cursor = res.next_cursor;
      more.hidden = !cursor;
    }
    status.addEventListener("change", () => busy(status, () => load(true)));
    more.addEventListener("click", () => busy(more, () => load(false)));
    box.replaceChildren(h("h3", null, "投递记录 ", status),
      h("div", { class: "table-wrap" }, h("table", { class: "wh-log" },
        h("thead", null, h("tr", null, ["时间", "事件", "状态", "次数", "最近结果", ""].map((t) => h("th", { text: t })))),
        tbody)), more);
    return load;
  }

  function webhookCard(e, topics, reload) {
    const path = "/api/v1/webhooks/" + encodeURIComponent(e.id);
    const logBox = h("div", { class: "wh-log-box" });
    let reloadLog = null;
    const openLog = async () => {
      reloadLog = reloadLog || deliveryLog(path, logBox, topics);
      await reloadLog(true);
    };
    const act = (label, cls, fn) => h("button", { type: "button", class: "small " + cls, text: label,
      onclick: (ev) => busy(ev.target, () => { hideAlert(); return fn(); }) });
    const buttons = [
      act("投递记录", "", openLog),
      act("发送测试", "", async () => {
        await api("POST", path + "/test");
        showOk(`已向 ${e.url} 排队发送测试事件，结果见投递记录。`);
        await openLog();
      }),
      act(e.active ? "停用" : "启用", "", async () => {
        await api("PATCH", path, { json: { active: !e.active } });
        showOk(e.active ? "已停用，停用期间的事件不会发送到此地址。" : "已启用。");
        await reload();
      }),
      act("重新生成密钥", "", async () => {
        if (!confirm("重新生成签名密钥？旧密钥立即失效，接收方需要换用新密钥才能校验签名。")) return;
        const rotated = await api("POST", path + "/rotate-secret");
        await reload();
        showSecret(rotated);
      }),
      act("删除", "danger", async () => {
        if (!confirm(`确定删除 Webhook ${e.url}？之后的事件不会再发送到这个地址。`)) return;
        await api("DELETE", path);
        showOk(`已删除 Webhook ${e.url}`);
        await reload();
      }),
    ];
    return h("section", { class: "card wh-card", "data-id": e.id },
      h("h3", null, e.url, " ", e.active ? badge("启用", "ok") : badge("已停用", "muted")),
      h("div", { class: "meta" }, `${e.description ? e.description + " · " : ""}密钥 ${e.secret_hint} · 创建于 ${fmtTime(e.created_at)}`),
      h("div", { class: "meta" }, "订阅：", e.topics.map((t) => h("span", { class: "tag", title: t, text: topicZh(topics, t) }))),
      h("div", { class: "row" }, buttons),
      logBox);
  }

  async function pageWebhooks() {
    const list = $("#wh-list"), form = $("#wh-form");
    const meta = await api("GET", "/api/v1/webhooks/topics");
    const topics = Object.fromEntries(meta.items.map((t) => [t.topic, t.description]));
    if (meta.signature) $("#wh-sig-header").textContent = meta.signature.header;
    $("#wh-topics").replaceChildren(
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "topics", value: meta.wildcard }), " 全部事件（包括以后新增的）"),
      ...meta.items.map((t) => h("label", { class: "check", title: t.description },
        h("input", { type: "checkbox", name: "topics", value: t.topic }), " " + topicZh(topics, t.topic), h("span", { class: "sub", text: " " + t.topic }))));
    async function load() {
      const res = await api("GET", "/api/v1/webhooks");
      list.replaceChildren(...res.items.map((e) => webhookCard(e, topics, load)));
      $("#wh-empty").hidden = res.items.length > 0;
    }
    onSubmit(form, async (fd) => {
      const body = { url: text(fd, "url"), topics: fd.getAll("topics").map(String), description: text(fd, "description") };
      if (!body.topics.length) { showAlert("error", "请检查：", "至少选择一个要订阅的事件。"); return; }
      const created = await api("POST", "/api/v1/webhooks", { json: body });
      form.reset();
      $("#wh-create-box").open = false;
      await load();
      showSecret(created);
      showOk(`已创建 Webhook ${created.url}。请立即保存下方的签名密钥。`);
    });
    $("#wh-secret-copy").addEventListener("click", () => navigator.clipboard.writeText($("#wh-secret-value").textContent)
      .then(() => showOk("已复制签名密钥"), () => showAlert("error", "无法复制，请手动选中复制。", "")));
    $("#wh-secret-hide").addEventListener("click", () => {
      $("#wh-secret-value").textContent = "";
      $("#wh-secret").hidden = true;
    });
    return load();
  }

  // ---- shared with the page scripts loaded after this one (people.js, segments.js) ---------
  window.liebianConsole = Object.freeze({ $, h, options, badge, dash, fmtTime, yuan, num, api, ApiError,
    showAlert, showError, showOk, hideAlert, busy, download, splitList });

  // ---- boot -------------------------------------------------------------------------------
  const PAGES = { login: pageLogin, overview: pageOverview, links: pageLinks, "live-codes": pageLiveCodes,
    domains: pageDomains, analytics: pageAnalytics, campaigns: pageCampaigns, review: pageReview,
    rewards: pageRewards, webhooks: pageWebhooks };
  function boot() {
    const page = document.body.dataset.page;
    if (page === "join") return; // the invitation page (auth.js): nobody is signed in yet
    if (page !== "login") {
      // Signed in by an API key in this tab, or by password (session cookie; auth.js).
      if (!sessionStorage.getItem(KEY) && !window.liebianSession()) { signOut(location.pathname); return; }
      $("#ws-name").textContent = workspace().name || "";
      $("#sign-out").addEventListener("click", async () => { await window.liebianSignOut(); signOut(); });
    }
    const run = page === "links" && $("#link-detail") ? pageLinkDetail
      : page === "campaigns" && $("#campaign-detail") ? pageCampaignDetail : PAGES[page];
    if (run) busy(null, run).finally(() => document.body.setAttribute("data-ready", "1"));
  }
  boot();
})();
