// Form script of the Inbox Hub gateway kit for "WhatsApp Session" (hooks.py doctype_js; see the
// kit's README).
//
// The WhatsApp app's own form script adds a "Sincronizar Ahora" button under "Acciones" that runs
// the app's old first-page sync. Frappe keeps the first button of a label in a group, and this
// script runs after the app's, so its refresh handler removes the app's button and adds the
// gateway's: exactly one "Sincronizar Ahora", which runs the gateway's sync. The app's other
// buttons are left as they are.
//
// Clicking asks the CRM for a short-lived JWT for this session
// (inboxhub_gateway.api.gateway_token; its scopes follow the user's role on the session), starts a
// sync on the gateway (POST /v1/sessions/{session_id}/sync), follows the job's Server-Sent Events
// with fetch() (an EventSource cannot send the Authorization header), falling back to polling
// GET /v1/sync-jobs/{id}, shows the progress in Frappe's progress dialog and the final counts per
// resource. A disconnected session (409 SESSION_NOT_CONNECTED) is offered a reconnection: connect,
// then the QR code to scan with its expiry countdown until the session is connected. The gateway
// pushes what it reads to the CRM (inboxhub_gateway.api.ingest); the form reloads at the end.
// Plain ES2017, no build step.
(function () {
	"use strict";

	const TOKEN_METHOD = "inboxhub_gateway.api.gateway_token";
	const BUTTON = "Sincronizar Ahora";
	const GROUP = "Acciones";
	const SESSION_ID = /^[A-Za-z0-9_-]{3,100}$/;
	const POLL_MS = 1500;
	const SESSION_POLL_MS = 2000;
	const FINAL_STATES = ["succeeded", "partial", "failed", "canceled"];
	const FINAL_PHASES = ["done", "partial", "failed", "canceled"];
	const RESOURCE_LABELS = { contacts: "Contactos", chats: "Chats", messages: "Mensajes" };

	function esc(v) {
		return String(v === undefined || v === null ? "" : v)
			.replace(/&/g, "&amp;")
			.replace(/</g, "&lt;")
			.replace(/>/g, "&gt;")
			.replace(/"/g, "&quot;")
			.replace(/'/g, "&#39;");
	}

	function sleep(ms) {
		return new Promise((resolve) => setTimeout(resolve, ms));
	}

	// ---- the gateway token (minted by the CRM per session; cached until shortly before it expires) ----

	const tokens = {}; // session document name -> {token, gatewayURL, scopes, until}

	function getToken(frm) {
		const name = frm.doc.name;
		const cached = tokens[name];
		if (cached && Date.now() < cached.until) {
			return Promise.resolve(cached);
		}
		return new Promise((resolve, reject) => {
			frappe.call({
				method: TOKEN_METHOD,
				args: { session: name },
				callback: (r) => {
					const m = r && r.message;
					if (!m || !m.token || !m.gateway_url) {
						reject(new GatewayError(0, "", __("El CRM no devolvió un token del gateway. Revise la configuración (inboxhub_gateway_url, inboxhub_jwt_secret).")));
						return;
					}
					const ttl = Math.max(10, Number(m.expires_in) || 300);
					tokens[name] = {
						token: m.token,
						gatewayURL: String(m.gateway_url).replace(/\/+$/, ""),
						scopes: String(m.scope || "").split(" ").filter(Boolean),
						until: Date.now() + (ttl - 30) * 1000,
					};
					resolve(tokens[name]);
				},
				error: (e) => reject(new GatewayError(403, "NOT_PERMITTED", __("No tiene permiso para usar el gateway con esta sesión."), e)),
			});
		});
	}

	function requireScope(t, scope) {
		if (t.scopes.indexOf(scope) < 0) {
			throw new GatewayError(403, "NOT_PERMITTED", __("Su rol en esta sesión no permite esta acción ({0}).", [scope]));
		}
	}

	// ---- calls to the gateway ----

	function GatewayError(status, code, detail, cause, retryAfter) {
		this.name = "GatewayError";
		this.status = status;
		this.code = code;
		this.detail = detail;
		this.cause = cause;
		this.retryAfter = retryAfter;
		this.message = detail;
	}
	GatewayError.prototype = Object.create(Error.prototype);

	// gw sends one request; it resolves to the Response for 2xx and rejects with a GatewayError
	// carrying the problem+json detail otherwise.
	async function gw(frm, method, path, opts) {
		opts = opts || {};
		const t = await getToken(frm);
		const headers = { Authorization: "Bearer " + t.token, Accept: opts.accept || "application/json" };
		const init = { method: method, headers: headers, cache: "no-store", signal: opts.signal };
		if (opts.body !== undefined) {
			headers["Content-Type"] = "application/json";
			init.body = JSON.stringify(opts.body);
		}
		let res;
		try {
			res = await fetch(t.gatewayURL + path, init);
		} catch (e) {
			throw new GatewayError(0, "NETWORK", __("No se pudo contactar con el gateway de WhatsApp ({0}).", [t.gatewayURL]), e);
		}
		if (res.ok) {
			return res;
		}
		let p = {};
		try {
			p = await res.json();
		} catch (e) {
			p = {};
		}
		const ra = parseInt(res.headers.get("Retry-After") || "", 10);
		throw new GatewayError(res.status, p.code || "", p.detail || p.title || res.statusText || "", p, isNaN(ra) ? undefined : ra);
	}

	async function gwJSON(frm, method, path, opts) {
		const res = await gw(frm, method, path, opts);
		return res.json();
	}

	// ---- messages ----

	function showError(err, title) {
		frappe.hide_progress && frappe.hide_progress();
		const e = err instanceof GatewayError ? err : new GatewayError(0, "", (err && err.message) || String(err));
		let msg;
		if (e.status === 429) {
			msg = __("Demasiadas solicitudes al gateway.") + " " +
				(e.retryAfter !== undefined ? __("Vuelva a intentarlo en {0} s.", [e.retryAfter]) : __("Vuelva a intentarlo en unos momentos."));
		} else if (e.status >= 500) {
			msg = __("El gateway de WhatsApp o Inbox Hub no está disponible ahora mismo.") +
				(e.retryAfter !== undefined ? " " + __("Vuelva a intentarlo en {0} s.", [e.retryAfter]) : "");
		} else if ((e.status === 401 || e.status === 403) && e.code !== "NOT_PERMITTED") {
			msg = __("El gateway rechazó la autorización del CRM.");
		} else {
			msg = "";
		}
		let html = msg ? "<p>" + esc(msg) + "</p>" : "";
		if (e.detail) {
			html += "<p>" + esc(e.detail) + "</p>";
		}
		if (e.code) {
			html += "<p class=\"text-muted small\">" + esc(e.code) + (e.status ? " (" + esc(e.status) + ")" : "") + "</p>";
		}
		frappe.msgprint({ title: title || __("Error de sincronización"), message: html, indicator: "red" });
	}

	// ---- progress ----

	function progressOf(job) {
		const res = job.resources && job.resources.length ? job.resources : Object.keys(job.progress || {});
		let done = 0;
		const parts = [];
		res.forEach((r) => {
			const p = (job.progress || {})[r] || {};
			if (FINAL_PHASES.indexOf(p.phase) >= 0) {
				done += 1;
			} else if (r === "messages" && p.chats) {
				done += Math.min(1, (p.chatsDone || 0) / p.chats);
			}
			parts.push((RESOURCE_LABELS[r] || String(r).replace(/[^A-Za-z0-9_-]/g, "")) + ": " + (p.fetched || 0) + " " + __("leídos") +
				", " + ((p.new || 0) + (p.changed || 0)) + " " + __("nuevos o cambiados"));
		});
		return { count: Math.round(done * 100), total: Math.max(1, res.length) * 100, description: parts.join(" · ") };
	}

	function showProgress(sessionID, job) {
		const p = progressOf(job);
		// The description holds numbers and fixed labels only (frappe.show_progress renders it as HTML).
		frappe.show_progress(__("Sincronizando {0}", [sessionID]), p.count, p.total, p.description);
	}

	function showFinal(frm, job) {
		frappe.hide_progress && frappe.hide_progress();
		const labels = { succeeded: __("completada"), partial: __("parcial"), failed: __("fallida"), canceled: __("cancelada") };
		const res = job.resources && job.resources.length ? job.resources : Object.keys(job.progress || {});
		let rows = "";
		let errors = "";
		res.forEach((r) => {
			const p = (job.progress || {})[r] || {};
			rows += "<tr><td>" + esc(RESOURCE_LABELS[r] || r) + "</td><td>" + esc(p.fetched || 0) + "</td><td>" +
				esc(p.new || 0) + "</td><td>" + esc(p.changed || 0) + "</td><td>" + esc(p.unchanged || 0) + "</td><td>" +
				esc(p.delivered || 0) + "</td><td>" + esc(p.failed || 0) + "</td></tr>";
			(p.errors || []).forEach((e) => {
				errors += "<li>" + esc(RESOURCE_LABELS[r] || r) + ": " + esc(e) + "</li>";
			});
		});
		const html = "<table class=\"table table-bordered inboxhub-sync-counts\"><thead><tr><th>" + esc(__("Recurso")) +
			"</th><th>" + esc(__("Leídos")) + "</th><th>" + esc(__("Nuevos")) + "</th><th>" + esc(__("Cambiados")) +
			"</th><th>" + esc(__("Sin cambios")) + "</th><th>" + esc(__("Entregados")) + "</th><th>" + esc(__("Fallidos")) +
			"</th></tr></thead><tbody>" + rows + "</tbody></table>" +
			(errors ? "<ul class=\"text-danger\">" + errors + "</ul>" : "") +
			(job.error ? "<p class=\"text-danger\">" + esc(job.error) + "</p>" : "");
		frappe.msgprint({
			title: __("Sincronización {0}", [labels[job.state] || job.state]),
			message: html,
			indicator: job.state === "succeeded" ? "green" : job.state === "partial" ? "orange" : "red",
		});
		if (frm && frm.reload_doc && !frm.is_new()) {
			frm.reload_doc();
		}
	}

	// ---- following a job: SSE over fetch, then polling ----

	function parseSSEBlock(block) {
		let event = "message";
		const data = [];
		block.split("\n").forEach((line) => {
			if (line === "" || line.charAt(0) === ":") {
				return;
			}
			const i = line.indexOf(":");
			const field = i < 0 ? line : line.slice(0, i);
			let value = i < 0 ? "" : line.slice(i + 1);
			if (value.charAt(0) === " ") {
				value = value.slice(1);
			}
			if (field === "event") {
				event = value;
			} else if (field === "data") {
				data.push(value);
			}
		});
		return data.length ? { event: event, data: data.join("\n") } : null;
	}

	// streamJob resolves to the final job, or rejects when the stream cannot be read to its end.
	async function streamJob(frm, jobID, onJob) {
		const res = await gw(frm, "GET", "/v1/sync-jobs/" + encodeURIComponent(jobID) + "/events", { accept: "text/event-stream" });
		if (!res.body || !res.body.getReader || typeof TextDecoder === "undefined") {
			throw new Error("no readable stream");
		}
		const reader = res.body.getReader();
		const decoder = new TextDecoder();
		let buf = "";
		for (;;) {
			const chunk = await reader.read();
			if (chunk.done) {
				throw new Error("the event stream ended before the job did");
			}
			buf += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
			let i;
			while ((i = buf.indexOf("\n\n")) >= 0) {
				const ev = parseSSEBlock(buf.slice(0, i));
				buf = buf.slice(i + 2);
				if (!ev) {
					continue;
				}
				if (ev.event === "error") {
					throw new Error("the event stream reported an error");
				}
				const job = JSON.parse(ev.data);
				onJob(job);
				if (ev.event === "done" || FINAL_STATES.indexOf(job.state) >= 0) {
					reader.cancel().catch(() => {});
					return job;
				}
			}
		}
	}

	async function pollJob(frm, jobID, onJob) {
		for (;;) {
			const body = await gwJSON(frm, "GET", "/v1/sync-jobs/" + encodeURIComponent(jobID));
			onJob(body.data);
			if (FINAL_STATES.indexOf(body.data.state) >= 0) {
				return body.data;
			}
			await sleep(POLL_MS);
		}
	}

	async function followJob(frm, jobID, onJob) {
		try {
			return await streamJob(frm, jobID, onJob);
		} catch (e) {
			if (e instanceof GatewayError && e.status && e.status !== 429 && e.status < 500) {
				throw e; // 401, 403, 404: polling would be refused the same way
			}
			return pollJob(frm, jobID, onJob);
		}
	}

	// ---- sync now ----

	async function syncNow(frm) {
		const sessionID = frm.doc.session_id;
		if (!sessionID || !SESSION_ID.test(sessionID)) {
			frappe.msgprint({ title: __("Sincronizar Ahora"), message: esc(__("La sesión no tiene un session_id válido.")), indicator: "red" });
			return;
		}
		if (frm.__inboxhubSyncing) {
			return;
		}
		frm.__inboxhubSyncing = true;
		try {
			requireScope(await getToken(frm), "sync");
			frappe.show_progress(__("Sincronizando {0}", [sessionID]), 0, 100, __("Iniciando la sincronización…"));
			const started = await gwJSON(frm, "POST", "/v1/sessions/" + encodeURIComponent(sessionID) + "/sync", { body: {} });
			const job = await followJob(frm, started.data.id, (j) => showProgress(sessionID, j));
			showFinal(frm, job);
		} catch (e) {
			if (e instanceof GatewayError && e.code === "SESSION_NOT_CONNECTED") {
				frappe.hide_progress && frappe.hide_progress();
				offerReconnect(frm, e);
			} else {
				showError(e);
			}
		} finally {
			frm.__inboxhubSyncing = false;
		}
	}

	// ---- reconnect: connect, QR with countdown, until connected ----

	function offerReconnect(frm, err) {
		const msg = "<p>" + esc(__("La sesión de WhatsApp no está conectada.")) + "</p>" +
			(err.detail ? "<p class=\"text-muted\">" + esc(err.detail) + "</p>" : "") +
			"<p>" + esc(__("¿Reconectar ahora? Se mostrará un código QR para escanear con WhatsApp en el teléfono (Ajustes, Dispositivos vinculados).")) + "</p>";
		frappe.confirm(msg, () => {
			reconnect(frm).catch((e) => showError(e, __("Error al reconectar")));
		});
	}

	async function reconnect(frm) {
		const sessionID = frm.doc.session_id;
		const base = "/v1/sessions/" + encodeURIComponent(sessionID);
		requireScope(await getToken(frm), "sessions:write");
		try {
			await gw(frm, "POST", base + "/connect");
		} catch (e) {
			if (!(e instanceof GatewayError && e.code === "SESSION_ALREADY_CONNECTED")) {
				throw e;
			}
			frappe.show_alert && frappe.show_alert({ message: __("La sesión ya está conectada."), indicator: "green" });
			return;
		}
		const d = new frappe.ui.Dialog({
			title: __("Escanee el código QR"),
			fields: [{ fieldtype: "HTML", fieldname: "qr" }],
		});
		let open = true;
		let blobURL = null;
		let expiresAt = null;
		const area = () => d.fields_dict.qr.$wrapper.get(0);
		d.fields_dict.qr.$wrapper.html(
			"<div class=\"inboxhub-qr\" style=\"text-align:center\">" +
			"<p class=\"inboxhub-qr-status\">" + esc(__("Preparando el código QR…")) + "</p>" +
			"<img class=\"inboxhub-qr-image\" alt=\"" + esc(__("Código QR de WhatsApp")) + "\" style=\"width:264px;height:264px;display:none;image-rendering:pixelated\">" +
			"<p class=\"inboxhub-qr-countdown text-muted\"></p></div>");
		const setStatus = (text) => {
			const el = area().querySelector(".inboxhub-qr-status");
			if (el) {
				el.textContent = text;
			}
		};
		const timer = setInterval(() => {
			const el = area().querySelector(".inboxhub-qr-countdown");
			if (!el || !expiresAt) {
				return;
			}
			const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
			el.textContent = left > 0 ? __("El código caduca en {0} s", [left]) : __("El código ha caducado; cargando uno nuevo…");
		}, 1000);
		d.onhide = () => {
			open = false;
			clearInterval(timer);
			if (blobURL) {
				URL.revokeObjectURL(blobURL);
			}
		};
		d.show();

		async function loadQR() {
			for (let tries = 0; open && tries < 60; tries++) {
				try {
					const meta = await gwJSON(frm, "GET", base + "/qr");
					expiresAt = meta.data && meta.data.expiresAt ? Date.parse(meta.data.expiresAt) : null;
					const res = await gw(frm, "GET", base + "/qr", { accept: "image/png" });
					const blob = await res.blob();
					if (blobURL) {
						URL.revokeObjectURL(blobURL);
					}
					blobURL = URL.createObjectURL(blob);
					const img = area().querySelector(".inboxhub-qr-image");
					img.src = blobURL;
					img.style.display = "inline-block";
					setStatus(__("Abra WhatsApp en el teléfono, Ajustes, Dispositivos vinculados, y escanee este código."));
					return true;
				} catch (e) {
					if (e instanceof GatewayError && e.code === "QR_NOT_READY") {
						await sleep(Math.min(5, e.retryAfter || 2) * 1000);
						continue;
					}
					if (e instanceof GatewayError && e.code === "SESSION_ALREADY_CONNECTED") {
						return false;
					}
					throw e;
				}
			}
			return false;
		}

		try {
			await loadQR();
			while (open) {
				await sleep(SESSION_POLL_MS);
				const s = await gwJSON(frm, "GET", base);
				const status = s.data && s.data.status;
				if (status === "connected") {
					setStatus(__("Conectada."));
					d.hide();
					frappe.show_alert && frappe.show_alert({ message: __("Sesión {0} conectada.", [sessionID]), indicator: "green" });
					if (frm.reload_doc && !frm.is_new()) {
						frm.reload_doc();
					}
					return;
				}
				if (expiresAt && Date.now() >= expiresAt) {
					await loadQR();
				}
			}
		} catch (e) {
			if (open) {
				d.hide();
			}
			throw e;
		}
	}

	// Frappe also lists a grouped button in the form's menu ("Acciones > Sincronizar Ahora", shown
	// on narrow screens), first one kept, and remove_custom_button leaves that entry: remove the
	// app's entry too, so the menu runs the gateway's sync as well.
	function removeMenuItem(frm, label) {
		const menu = frm.page && frm.page.menu;
		if (!menu || typeof menu.find !== "function") {
			return;
		}
		menu.find("[data-label=\"" + encodeURIComponent(label) + "\"]").each(function () {
			const li = this.closest("li");
			(li || this).remove();
		});
	}

	frappe.ui.form.on("WhatsApp Session", {
		refresh(frm) {
			if (frm.is_new()) {
				return;
			}
			// The app's handler ran first and may have added its own button with this label: Frappe
			// would keep that one and drop ours, so remove it, then add the gateway's.
			frm.remove_custom_button(BUTTON, GROUP);
			removeMenuItem(frm, __(GROUP) + " > " + __(BUTTON));
			frm.add_custom_button(__(BUTTON), () => syncNow(frm), __(GROUP));
		},
	});
})();
