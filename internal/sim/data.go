package sim

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// historyEnd is when generated history ends. It is fixed, not the clock, so that the same seed
// gives the same data whenever the simulator starts.
func historyEnd() time.Time { return time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC) }

const historySpan = 120 * 24 * time.Hour

// dataset is the WhatsApp data of one session: contacts, chats and their messages. It is
// guarded by Server.mu.
type dataset struct {
	rng         *rand.Rand
	words       vocabulary
	ownJID      string
	contacts    []*contact
	contactByID map[string]*contact
	chats       []*chat
	chatByID    map[string]*chat
	all         []*message // every message in id order, which is oldest first
	nextID      int64
	renames     int
}

type contact struct {
	id           string
	name         string // may be empty
	nullName     bool   // an empty name is answered as null rather than ""
	lower        string // lower-case name, for search
	verifiedName string
	notify       string
	imgURL       string
	isGroup      bool
	isWAContact  bool
}

type chat struct {
	id       string
	name     string
	isGroup  bool
	messages []*message // oldest first
	unread   int
}

type message struct {
	id         int64
	waID       string
	chatID     string
	from, to   string
	fromMe     bool
	kind       string
	body       string
	at         time.Time
	unixTime   bool // timestamp answered as unix seconds rather than an ISO string
	useContent bool // text answered in "content" rather than "body"
	status     string
	isRead     bool
}

// dataSize is how much a dataset holds.
type dataSize struct{ contacts, chats, messagesPerChat int }

// generateData builds the dataset of session id from seed. The same arguments give the same
// data. Chats are the conversations with a random subset of the contacts.
func generateData(seed int64, id int, ownJID string, size dataSize) *dataset {
	d := &dataset{
		rng:         rand.New(rand.NewPCG(uint64(seed), uint64(id))),
		words:       newVocabulary(),
		ownJID:      ownJID,
		contactByID: make(map[string]*contact, size.contacts),
		chatByID:    make(map[string]*chat, size.chats),
		contacts:    make([]*contact, 0, size.contacts),
		nextID:      1,
	}
	for range size.contacts {
		c := d.newContact()
		d.contacts = append(d.contacts, c)
		d.contactByID[c.id] = c
	}
	var history []*message
	for _, i := range d.rng.Perm(len(d.contacts))[:min(size.chats, len(d.contacts))] {
		c := d.contacts[i]
		ch := &chat{id: c.id, name: c.name, isGroup: c.isGroup}
		ch.messages = d.history(ch, size.messagesPerChat)
		history = append(history, ch.messages...)
		d.chats = append(d.chats, ch)
		d.chatByID[ch.id] = ch
	}
	slices.SortStableFunc(history, func(a, b *message) int { return a.at.Compare(b.at) })
	for _, m := range history {
		m.id = d.nextID
		d.nextID++
	}
	d.all = history
	return d
}

// newContact makes one contact with a JID not used yet: mostly phone JIDs, about 10% @lid
// and 3% groups; names in many scripts, some empty.
func (d *dataset) newContact() *contact {
	for {
		c := d.randomContact()
		if _, taken := d.contactByID[c.id]; !taken {
			return c
		}
	}
}

func (d *dataset) randomContact() *contact {
	r := d.rng
	c := &contact{isWAContact: true}
	switch x := r.IntN(100); {
	case x < 3:
		c.isGroup, c.isWAContact = true, false
		c.name = pick(r, d.words.groups)
		if r.IntN(2) == 0 {
			c.id = fmt.Sprintf("120363%012d@g.us", r.Int64N(1e12))
		} else {
			c.id = fmt.Sprintf("%s-%d@g.us", d.msisdn(), 1_500_000_000+r.IntN(230_000_000))
		}
	case x < 13:
		c.id = fmt.Sprintf("%d@lid", 10_000_000_000_000+r.Int64N(290_000_000_000_000))
	default:
		c.id = d.msisdn() + "@s.whatsapp.net"
	}
	if !c.isGroup {
		d.personName(c)
	}
	c.lower = strings.ToLower(c.name)
	if r.IntN(10) < 4 {
		c.imgURL = fmt.Sprintf("https://pps.whatsapp.net/v/t61.24694-24/%d_n.jpg?ccb=11-4&oh=sim", r.Int64N(1e15))
	}
	return c
}

// personName fills name, notify and verifiedName of a person or business.
func (d *dataset) personName(c *contact) {
	r := d.rng
	first := pick(r, d.words.first)
	switch x := r.IntN(100); {
	case x < 5: // never saved in the address book
		c.nullName = x < 3
		c.notify = first
		if r.IntN(2) == 0 {
			c.notify = ""
		}
	case x < 10:
		c.verifiedName = pick(r, d.words.business)
		c.name, c.notify = c.verifiedName, c.verifiedName
	default:
		c.name = first + " " + pick(r, d.words.last)
		c.notify = first
	}
	if r.IntN(30) == 0 {
		c.isWAContact = false
	}
}

// history makes n messages of a chat, oldest first, ending at a random time of the history
// span; the last few incoming ones may be unread.
func (d *dataset) history(ch *chat, n int) []*message {
	r := d.rng
	at := historyEnd().Add(-time.Duration(r.Int64N(int64(historySpan/time.Second))) * time.Second)
	msgs := make([]*message, n)
	for i := n - 1; i >= 0; i-- {
		msgs[i] = d.randomMessage(ch, at)
		at = at.Add(-time.Duration(30+r.IntN(36*3600)) * time.Second)
	}
	unread := r.IntN(4)
	for i := n - 1; i >= 0 && ch.unread < unread && !msgs[i].fromMe; i-- {
		msgs[i].isRead = false
		ch.unread++
	}
	return msgs
}

// randomMessage makes one message of chat ch sent at at.
func (d *dataset) randomMessage(ch *chat, at time.Time) *message {
	r := d.rng
	m := &message{chatID: ch.id, at: at, fromMe: r.IntN(10) < 4, kind: "text", isRead: true,
		unixTime: r.IntN(10) < 3, useContent: r.IntN(10) == 0}
	switch x := r.IntN(100); {
	case x < 88:
		m.body = pick(r, d.words.phrases)
		if r.IntN(3) == 0 {
			m.body += " " + pick(r, d.words.phrases)
		}
	case x < 94:
		m.kind = "image"
		if r.IntN(2) == 0 {
			m.body = pick(r, d.words.phrases)
		}
	case x < 97:
		m.kind = "audio"
	default:
		m.kind, m.body = "document", fmt.Sprintf("factura_2025_%03d.pdf", r.IntN(1000))
	}
	if m.fromMe {
		m.waID = fmt.Sprintf("3EB0%016X", r.Uint64())
		m.from, m.to = d.ownJID, ch.id
		m.status = []string{"sent", "delivered", "read", "read"}[r.IntN(4)]
		return m
	}
	m.waID = fmt.Sprintf("%016X%04X", r.Uint64(), r.IntN(1<<16))
	m.from, m.to, m.status = ch.id, d.ownJID, "received"
	if ch.isGroup {
		m.from = d.msisdn() + "@s.whatsapp.net"
	}
	return m
}

// chatFor returns the chat with jid, creating an empty one (named after the contact, if known).
func (d *dataset) chatFor(jid string) *chat {
	if ch := d.chatByID[jid]; ch != nil {
		return ch
	}
	ch := &chat{id: jid, isGroup: strings.HasSuffix(jid, "@g.us")}
	if c := d.contactByID[jid]; c != nil {
		ch.name = c.name
	}
	d.chats = append(d.chats, ch)
	d.chatByID[jid] = ch
	return ch
}

// appendMessage gives m the next id and adds it to its chat and to the session's history.
func (d *dataset) appendMessage(ch *chat, m *message) {
	m.id = d.nextID
	d.nextID++
	ch.messages = append(ch.messages, m)
	d.all = append(d.all, m)
	if !m.fromMe && !m.isRead {
		ch.unread++
	}
}

// outgoing makes the message the session sends to ch now.
func (d *dataset) outgoing(ch *chat, kind, body string, now time.Time) *message {
	return &message{waID: fmt.Sprintf("3EB0%016X", d.rng.Uint64()), chatID: ch.id, from: d.ownJID, to: ch.id,
		fromMe: true, kind: kind, body: body, at: now, status: "sent", isRead: true}
}

// incoming makes a text message received in ch now.
func (d *dataset) incoming(ch *chat, now time.Time) *message {
	m := &message{waID: fmt.Sprintf("%016X%04X", d.rng.Uint64(), d.rng.IntN(1<<16)), chatID: ch.id, from: ch.id,
		to: d.ownJID, kind: "text", body: pick(d.rng, d.words.phrases), at: now, status: "received", unixTime: d.rng.IntN(2) == 0}
	if ch.isGroup {
		m.from = d.msisdn() + "@s.whatsapp.net"
	}
	return m
}

// renameContacts gives n distinct contacts new names and returns their ids.
func (d *dataset) renameContacts(n int) []string {
	n = min(n, len(d.contacts))
	d.renames++
	picked := make(map[int]int, n) // partial Fisher-Yates over the indexes
	at := func(i int) int {
		if v, ok := picked[i]; ok {
			return v
		}
		return i
	}
	ids := make([]string, 0, n)
	for i := range n {
		j := i + d.rng.IntN(len(d.contacts)-i)
		vi, vj := at(i), at(j)
		picked[i], picked[j] = vj, vi
		c := d.contacts[vj]
		base, _, _ := strings.Cut(c.name, " ✎")
		if base == "" {
			base = "Contacto " + c.id[:min(4, len(c.id))]
		}
		c.name = fmt.Sprintf("%s ✎%d", base, d.renames)
		c.nullName, c.lower = false, strings.ToLower(c.name)
		if ch := d.chatByID[c.id]; ch != nil {
			ch.name = c.name
		}
		ids = append(ids, c.id)
	}
	return ids
}

// chatsByRecency returns the chats, the one with the newest message first.
func (d *dataset) chatsByRecency() []*chat {
	out := slices.Clone(d.chats)
	slices.SortStableFunc(out, func(a, b *chat) int {
		ta, tb := a.lastAt(), b.lastAt()
		if c := tb.Compare(ta); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	return out
}

func (ch *chat) last() *message {
	if len(ch.messages) == 0 {
		return nil
	}
	return ch.messages[len(ch.messages)-1]
}

func (ch *chat) lastAt() time.Time {
	if m := ch.last(); m != nil {
		return m.at
	}
	return time.Time{}
}

// msisdn is an international mobile number, digits only, from one of a few countries.
func (d *dataset) msisdn() string {
	f := d.words.numbers[d.rng.IntN(len(d.words.numbers))]
	var b strings.Builder
	b.WriteString(f.prefix)
	for range f.digits {
		b.WriteByte(byte('0' + d.rng.IntN(10)))
	}
	return b.String()
}

func pick(r *rand.Rand, from []string) string { return from[r.IntN(len(from))] }

// vocabulary is what generated data is made of: names in many scripts, phrases, and phone
// number shapes (country prefix and digits that follow).
type vocabulary struct {
	first, last, business, groups, phrases []string
	numbers                                []numberFormat
}

type numberFormat struct {
	prefix string
	digits int
}

func newVocabulary() vocabulary {
	return vocabulary{
		first: []string{"José", "María", "Lucía", "Sofía", "Mateo", "Andrés", "Camila", "Valentina", "Nicolás",
			"Martín", "Zoë", "François", "Jürgen", "Ağça", "محمد", "فاطمة", "Александр", "Ольга", "Дмитрий",
			"李雷", "さくら", "Ana 🌸", "Pedro 🚀", "Carlos", "Daniela", "Jorge", "Elena", "Íñigo", "Noëlle", "Çağla"},
		last: []string{"García", "Martínez", "Rodríguez", "López", "Peña", "Muñoz", "Sánchez", "Gómez", "Díaz",
			"Álvarez", "Núñez", "Ibáñez", "Smith", "Иванов", "Петрова", "الحسن", "O'Brien", "van der Berg", "Øster", "Castaño"},
		business: []string{"Ferretería El Águila", "Clínica Dental Sonrisa", "Café ☕ La Esquina", "Inmobiliaria Núñez",
			"Taller Mecánico Díaz", "Panadería Ñam Ñam", "Óptica Visión 2000"},
		groups: []string{"Familia 👨‍👩‍👧", "Equipo Ventas 2025", "Vecinos Edificio Ñ", "Fútbol los jueves ⚽",
			"Проект Альфа", "مجموعة العمل", "Clientes VIP ⭐", "Soporte técnico 🛠️"},
		phrases: []string{"Hola, ¿qué tal?", "Buenos días 🌞", "¿Me envías la factura, por favor?", "Perfecto, gracias 🙏",
			"Nos vemos mañana a las 10:00", "¿Cuál es el precio del envío?", "Ya realicé el pago ✅", "Te llamo en 5 minutos",
			"¿Tienen disponibilidad el sábado?", "Recibido 👍", "El pedido llegó incompleto 😕", "¿Puedo cambiar la dirección?",
			"Muchas gracias por su atención", "Necesito hablar con un asesor", "Jajaja 😂", "Ok", "¿Sigue en pie la reunión?",
			"Adjunto el comprobante", "Привет! Как дела?", "مرحبا، شكرا جزيلا", "Llego tarde, hay tráfico 🚗",
			"¿A qué hora abren?", "Confirmo la cita del jueves", "Feliz cumpleaños 🎂🎉", "Año nuevo, vida nueva"},
		numbers: []numberFormat{{"346", 8}, {"347", 8}, {"521", 10}, {"573", 9}, {"549", 10}, {"1", 10}, {"447", 9},
			{"9715", 8}, {"79", 9}, {"5511", 9}, {"201", 9}, {"336", 8}, {"4915", 9}},
	}
}
